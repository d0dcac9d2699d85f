"""The embedding model: perturbagen split, normalization, network, training, card, store.

``split`` (perturbagens to train / validation / test), ``normalization`` (per-gene
statistics of the training profiles), ``network`` (the DenseNet-SELU embedding and its
margin head, Keras), ``training`` (data pipeline and the checkpointed loop), ``card`` (the
model card and the held-out comparison behind it), ``split_models`` (training on one split,
and the models of further splits), ``store`` (saving and loading a model directory).
"""
