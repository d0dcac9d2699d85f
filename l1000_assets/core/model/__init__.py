"""The embedding model: perturbagen split, normalization, network, training, store.

``split`` (perturbagens to train / validation / test), ``normalization`` (per-gene
statistics of the training profiles), ``network`` (the DenseNet-SELU embedding and its
margin head, Keras), ``training`` (data pipeline and the checkpointed loop), ``store``
(saving and loading a model directory), ``card`` (the model card).
"""
