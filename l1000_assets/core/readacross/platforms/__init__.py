"""Queries from other platforms: RNA-seq and TempO-Seq counts, DE tables and level-3 L1000
plates turned into level-4-like landmark z-scores.

``identifiers`` (Entrez, symbols, TempO-Seq probes, Ensembl through a mapping),
``transforms`` (library size, variance-stabilized log, robust z against controls, quantile
mapping), ``landmark_stats`` (the lake statistics stored with each model: imputation of
unmeasured landmarks, the level-4 quantiles), ``inputs`` (the readers of each input kind),
``render`` (validation renderings from a synthetic release), ``validation`` (retrieval of
the true perturbagen).
"""
