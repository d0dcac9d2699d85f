"""The one detector of matrices and profiles that plainly are not level-4 z-scores, on real
files of each kind."""

import h5py
import numpy as np

from l1000_assets.core.formats.gct import GctReader
from l1000_assets.core.formats.gctx import MATRIX_NODE
from l1000_assets.core.zscores import (
    FAR_MEDIAN,
    NO_NEGATIVE,
    WHOLE_NUMBERS,
    not_zscores,
    out_of_range,
)


def test_real_level3_is_flagged_and_real_z_scores_are_not(real_dir):
    level3 = GctReader(real_dir / "LJP005_A375_24H_level4_n377x978.gct").values
    assert set(not_zscores(level3.reshape(1, -1))) == {NO_NEGATIVE, FAR_MEDIAN}
    per_profile = not_zscores(level3)
    assert per_profile[NO_NEGATIVE].all() and per_profile[FAR_MEDIAN].all()
    with h5py.File(real_dir / "CORE_A_level4_ZSPCINF_n40x12328.gctx") as f:
        level4 = f[MATRIX_NODE][()]
    assert not_zscores(level4) == {} and not_zscores(level4.reshape(1, -1)) == {}
    shrna = GctReader(real_dir / "KD017_shRNA_plate_n374x976.gct").values
    assert not_zscores(shrna) == {}
    assert not out_of_range(level4).any()


def test_counts_and_shifted_values_are_flagged():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(4, 978)).astype(np.float32)
    counts = rng.poisson(20, size=(1, 978)).astype(np.float32)
    values = np.vstack([z, counts, z[:1] + 3, np.rint(z[:1] * 3)])
    found = not_zscores(values)
    assert found[NO_NEGATIVE].tolist() == [False] * 4 + [True, False, False]
    assert found[WHOLE_NUMBERS].tolist() == [False] * 4 + [True, False, True]
    assert found[FAR_MEDIAN].tolist() == [False] * 4 + [True, True, False]
    assert out_of_range(np.vstack([z[:1], z[:1] * 1e30])).tolist() == [False, True]
    assert not_zscores(np.zeros((0, 978))) == {}
