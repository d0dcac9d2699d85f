"""Make cmapPy 4.0.1 work on numpy 2 and pandas 3.

cmapPy 4.0.1 calls ``numpy.string_`` (removed in numpy 2) when writing GCTX,
``pandas.to_numeric(errors="ignore")`` (removed in pandas 3) when parsing metadata, and, in
``agg_wt_avg`` (MODZ), ``numpy.fill_diagonal`` on ``DataFrame.values``, which pandas 3
(copy-on-write) hands out read-only. Rather than patching numpy or pandas globally,
:func:`patch_cmappy` swaps the ``numpy``/``np`` and ``pd`` names *inside the affected cmapPy
modules* for thin proxies that restore the old behaviour. Importing
:mod:`l1000_assets.core.formats.compat` applies the patch once.

Use :func:`parse`, :func:`write` and :func:`agg_wt_avg` from here instead of cmapPy's own
modules.
"""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

_PATCHED = False


def _fill_diagonal_through_view(a: np.ndarray, val: Any, wrap: bool = False) -> None:
    """``np.fill_diagonal``, also through the read-only view pandas 3 returns for
    ``DataFrame.values``: the view is made writeable again (numpy allows it when the frame's
    own array is), so the fill reaches the frame, as it did before copy-on-write. cmapPy
    fills a correlation frame it has just made and owns alone."""
    if not a.flags.writeable:
        a.flags.writeable = True
    np.fill_diagonal(a, val, wrap=wrap)


class _NumpyProxy(types.ModuleType):
    """numpy, plus the ``string_`` alias numpy 2 removed and a ``fill_diagonal`` that writes
    through pandas 3's read-only ``DataFrame.values``."""

    string_ = np.bytes_
    fill_diagonal = staticmethod(_fill_diagonal_through_view)

    def __getattr__(self, name: str) -> Any:
        return getattr(np, name)


def _to_numeric_ignore(arg: Any, errors: str = "raise", **kwargs: Any) -> Any:
    """``pd.to_numeric`` with pandas < 3's ``errors="ignore"``: return the input unchanged."""
    if errors == "ignore":
        try:
            return pd.to_numeric(arg, errors="raise", **kwargs)
        except (ValueError, TypeError):
            return arg
    return pd.to_numeric(arg, errors=errors, **kwargs)


class _PandasProxy(types.ModuleType):
    """pandas, with a ``to_numeric`` that still accepts ``errors="ignore"``."""

    to_numeric = staticmethod(_to_numeric_ignore)

    def __getattr__(self, name: str) -> Any:
        return getattr(pd, name)


def patch_cmappy() -> None:
    """Install the proxies into cmapPy's modules (idempotent)."""
    global _PATCHED
    if _PATCHED:
        return
    from cmapPy.math import agg_wt_avg as modz_module
    from cmapPy.pandasGEXpress import parse_gct, parse_gctx, write_gctx

    write_gctx.numpy = _NumpyProxy("numpy")
    modz_module.np = _NumpyProxy("numpy")
    for module in (parse_gct, parse_gctx):
        module.pd = _PandasProxy("pandas")
    _PATCHED = True


patch_cmappy()


def parse(path: str | Path, **kwargs: Any):
    """cmapPy's ``parse`` (GCT or GCTX) on numpy 2 / pandas 3. Returns a ``GCToo``."""
    from cmapPy.pandasGEXpress import parse as cmap_parse

    return cmap_parse.parse(str(path), **kwargs)


def write(gctoo, path: str | Path) -> None:
    """Write a ``GCToo`` as GCTX (``.gctx``) or GCT text (``.gct``) with cmapPy.

    cmapPy's GCTX writer ignores chunking; use :class:`l1000_assets.core.formats.gctx.GctxWriter`
    for large matrices.
    """
    path = str(path)
    if path.endswith(".gctx"):
        from cmapPy.pandasGEXpress import write_gctx

        write_gctx.write(gctoo, path)
    else:
        from cmapPy.pandasGEXpress import write_gct

        write_gct.write(gctoo, path)


def agg_wt_avg(
    mat: pd.DataFrame, min_wt: float = 0.01, corr_metric: str = "spearman"
) -> tuple[pd.Series | pd.DataFrame, pd.DataFrame | None, pd.Series | None, pd.Series | None]:
    """cmapPy's MODZ, ``cmapPy.math.agg_wt_avg.agg_wt_avg``, on numpy 2 / pandas 3.

    ``mat`` holds one replicate per column (genes as rows). Returns cmapPy's
    (signature, upper-triangle correlations, raw weights, weights; weights rounded to 4
    decimals by cmapPy). pandas 3's ``stack`` keeps the NaN cells (diagonal and lower
    triangle) that pandas 2 dropped from the correlations table: they are dropped here, so
    the table is the upper triangle, as before.
    """
    from cmapPy.math import agg_wt_avg as modz_module

    signature, upper, raw_weights, weights = modz_module.agg_wt_avg(
        mat, min_wt=min_wt, corr_metric=corr_metric
    )
    if upper is not None:
        upper = upper.dropna(subset=["corr"]).reset_index(drop=True)
    return signature, upper, raw_weights, weights
