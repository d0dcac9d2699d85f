"""What level-4 z-scores look like: one detector for matrices and profiles that plainly are not.

Level-4 values (ZSPCINF) are robust z-scores of each gene against its plate population:
centred on 0, negative about as often as positive, fractional. A matrix or profile with no
negative value (level-3 log2 expression is 3 to 15), made of whole numbers only (counts), or
with a median far from 0 is something else, and embeds to arbitrary neighbours. The lake
ingest and read-across refuse such input unless the caller allows it
(``allow_non_zscores``); converting other levels and platforms is not done here: convert
them to z-scores first.

Values far outside any z-score (:data:`MAX_ABS_ZSCORE`) are degenerate whatever the scale:
read-across refuses them without an override.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

#: A median of magnitude above this is not a z-score's (the medians of the real level-4
#: profiles in the test data lie within 0.3).
MEDIAN_LIMIT = 2.0
#: Values of magnitude above this are far outside any z-score (the real level-4 values in
#: the test data reach 72).
MAX_ABS_ZSCORE = 1000.0
#: How to get past the refusal, as messages name it.
OVERRIDE = "allow_non_zscores"

NO_NEGATIVE = "no negative value (like expression levels or counts)"
WHOLE_NUMBERS = "only whole numbers (like counts)"
FAR_MEDIAN = f"a median far from 0 (|median| > {MEDIAN_LIMIT:g})"


def not_zscores(values: NDArray[np.floating]) -> dict[str, NDArray[np.bool_]]:
    """Which rows of ``values`` (profiles x genes, finite) plainly are not z-scores, by
    reason: reason -> boolean mask of the rows (only reasons some row has).

    A whole matrix is checked as one row (``values.reshape(1, -1)``, or a sample of it).
    """
    values = np.atleast_2d(np.asarray(values))
    if values.size == 0:
        return {}
    found = {
        NO_NEGATIVE: (values >= 0).all(axis=1),
        WHOLE_NUMBERS: (values == np.rint(values)).all(axis=1),
        FAR_MEDIAN: np.abs(np.median(values, axis=1)) > MEDIAN_LIMIT,
    }
    return {reason: rows for reason, rows in found.items() if rows.any()}


def out_of_range(values: NDArray[np.floating], limit: float = MAX_ABS_ZSCORE) -> NDArray[np.bool_]:
    """Rows of ``values`` (profiles x genes) with a value of magnitude above ``limit``."""
    return (np.abs(np.atleast_2d(values)) > limit).any(axis=1)
