"""File formats of LINCS L1000 data.

``matrix`` (the interface both level-4 matrix readers share, and ``open_matrix``), ``gctx``
(HDF5 GCTX streaming read and write with h5py), ``gct`` (GCT 1.2/1.3 text), ``compat``
(cmapPy 4.0.1 on numpy 2 / pandas 3), ``info_tables`` (the tab-separated ``inst_info`` /
``gene_info`` / ``pert_info`` / ``cell_info`` tables).
"""
