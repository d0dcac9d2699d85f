"""The paper's evaluation: retrieval metrics, protocols and the report.

``metrics`` (reference rank-quantile metrics and the pooled summary), ``retrieval`` (exact
and sampled retrieval at scale), ``kernels`` (its compiled counting kernels and those of the
CMap scores), ``connectivity`` (CMap WTCS, NCS, tau), ``protocols`` (same perturbagen,
replicates, drug level) and ``report`` (the tidy table, curves, Table 1).
"""
