"""Pure computation for l1000_assets. Nothing in this package imports dagster.

One subpackage per stage, named like the ``defs/`` folders and asset groups: ``formats``,
``releases``, ``lake``, ``model``, ``embeddings``, ``evaluation``, ``readacross``,
``catalog``. Beside them, what every stage uses: ``errors`` (bad input naming the file),
``atomic`` (atomic file and directory writes), ``progress`` (log and progress callbacks).
"""
