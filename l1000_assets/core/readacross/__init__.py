"""Read-across with a user's own profiles.

``genes`` (gene identifiers to the model's landmark order), ``query_files`` (GCT, GCTX,
CSV/TSV query files, validated), ``ranking`` (the engine: embed and rank against the
perturbagen embeddings), ``results`` (the results tables), ``folder`` (the watched queries
folder), ``map`` (the perturbagen map).
"""
