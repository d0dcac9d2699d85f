"""Make cmapPy 4.0.1 work on numpy 2 and pandas 3.

cmapPy 4.0.1 calls ``numpy.string_`` (removed in numpy 2) when writing GCTX and
``pandas.to_numeric(errors="ignore")`` (removed in pandas 3) when parsing metadata.
Rather than patching numpy or pandas globally, :func:`patch_cmappy` swaps the ``numpy``
and ``pd`` names *inside the affected cmapPy modules* for thin proxies that restore the
old behaviour. Importing :mod:`l1000_assets.core.formats.compat` applies the patch once.

Use :func:`parse` and :func:`write` from here instead of cmapPy's own modules.
"""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

_PATCHED = False


class _NumpyProxy(types.ModuleType):
    """numpy, plus the ``string_`` alias numpy 2 removed."""

    string_ = np.bytes_

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
    from cmapPy.pandasGEXpress import parse_gct, parse_gctx, write_gctx

    write_gctx.numpy = _NumpyProxy("numpy")
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
