"""LINCS releases: where they come from, what their files hold, and whether they changed.

``registry`` (the known public releases and their files), ``schema`` (the canonical
metadata schema every release is mapped onto), ``local`` (a release directory on disk),
``reconcile`` (matrix and metadata agree), ``download`` (resumable HTTP with checksums),
``watch`` (version signatures for the release sensor), ``synthetic`` (the embedded
synthetic release) and ``calibration`` (its difficulty against the published baselines).
"""
