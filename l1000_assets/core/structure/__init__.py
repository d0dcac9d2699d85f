"""Chemical structure: ECFP4 fingerprints of compounds and their Tanimoto similarity
(the structure baseline of Donner et al.'s Table 2)."""
