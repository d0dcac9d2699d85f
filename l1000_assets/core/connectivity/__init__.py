"""Gene-set queries as CMap users make them: up and down gene sets scored against this
lake's own level-5 signatures in the BING gene space.

``store`` (the memory-mapped signature store: int16 gene ranks and float16 z-scores,
gene-major), ``signatures`` (building it from the release matrices in one pass, MODZ),
``kernels`` (the compiled gene-major scoring kernels, reusing the CMap walk of
:mod:`~l1000_assets.core.evaluation.kernels`), ``scoring`` (WTCS, NCS, tau, SigCom's rank
test, aggregation to perturbagens), ``reference`` (the tau reference, this lake's
"Touchstone"), ``genes`` (gene identifiers to the store's gene space), ``gene_sets`` (GRP,
GMT and CSV/TSV query files), ``engine`` (a query file to ranked hits), ``enrichment``
(MOA and target statistics on the hits), ``results`` (the results tables) and
``evaluation`` (the gene-set retrieval protocol).

The CMap scores themselves (the ES walk, WTCS from ES, NCS normalization) live in
:mod:`~l1000_assets.core.evaluation.connectivity` and are reused here, not repeated.
"""
