"""The compound fingerprints table: one row per compound with a SMILES, ECFP4 bit-packed.

Columns: ``pert_id``, ``pert_iname``, ``canonical_smiles``, ``inchi_key``, ``release`` (the
first release, in name order, that describes the compound), ``n_bits_on`` and ``ecfp4``
(``fixed_size_binary(256)``: DuckDB reads it as a BLOB, ``ecfp4::BIT`` gives the bit
string for ``bit_count`` and ``&``). Written to a temporary name and renamed into place.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from l1000_assets.core.atomic import atomic_file
from l1000_assets.core.structure.fingerprints import FINGERPRINT, N_BYTES, ecfp4

SMILES_ALIASES = ("canonical_smiles", "smiles", "SMILES")
MISSING = {"", "-666", "NA", "nan", "restricted"}

SCHEMA = pa.schema(
    [
        ("pert_id", pa.string()),
        ("pert_iname", pa.string()),
        ("canonical_smiles", pa.string()),
        ("inchi_key", pa.string()),
        ("release", pa.string()),
        ("n_bits_on", pa.int32()),
        ("ecfp4", pa.binary(N_BYTES)),
    ],
    metadata={b"fingerprint": FINGERPRINT.encode()},
)


def compound_smiles(pert_info: pd.DataFrame, release: str) -> pd.DataFrame:
    """The compounds of one release's ``pert_info`` (or beta ``compoundinfo``) that have a
    SMILES: ``pert_id, pert_iname, canonical_smiles, inchi_key, release``; one row per
    ``pert_id`` (the first)."""
    column = next((c for c in SMILES_ALIASES if c in pert_info.columns), None)
    if column is None or "pert_id" not in pert_info.columns:
        return pd.DataFrame(columns=[f.name for f in SCHEMA][:5])
    smiles = pert_info[column].astype("string").str.strip()
    keep = smiles.notna() & ~smiles.isin(MISSING)
    name = "pert_iname" if "pert_iname" in pert_info.columns else "cmap_name"
    out = pd.DataFrame(
        {
            "pert_id": pert_info["pert_id"].astype("string"),
            "pert_iname": pert_info[name].astype("string") if name in pert_info.columns else pd.NA,
            "canonical_smiles": smiles,
            "inchi_key": pert_info["inchi_key"].astype("string")
            if "inchi_key" in pert_info.columns
            else pd.NA,
            "release": release,
        }
    )[keep.to_numpy()]
    return out.drop_duplicates("pert_id").reset_index(drop=True)


def fingerprint_table(compounds: pd.DataFrame) -> tuple[pa.Table, int]:
    """ECFP4 of every compound; returns the table of the valid ones and how many SMILES
    RDKit could not read."""
    fps = ecfp4(compounds["canonical_smiles"].tolist())
    ok = fps.valid
    kept = compounds[ok].reset_index(drop=True)
    packed = fps.packed[ok]
    ecfp = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(N_BYTES), len(kept), [None, pa.py_buffer(np.ascontiguousarray(packed))]
    )
    columns = {
        c: pa.array(kept[c].astype(object).where(kept[c].notna(), None), pa.string())
        for c in ("pert_id", "pert_iname", "canonical_smiles", "inchi_key", "release")
    }
    table = pa.table(
        {**columns, "n_bits_on": pa.array(fps.n_on[ok], pa.int32()), "ecfp4": ecfp},
        schema=SCHEMA,
    )
    return table, int((~ok).sum())


def write_fingerprints(
    per_release: Mapping[str, pd.DataFrame], path: str | Path
) -> tuple[pa.Table, int]:
    """Fingerprints of the compounds of every release (``release -> compound_smiles``),
    first release in name order winning, written to ``path``; returns the table and the
    number of unreadable SMILES."""
    frames = [per_release[r] for r in sorted(per_release)]
    compounds = (
        pd.concat(frames, ignore_index=True).drop_duplicates("pert_id")
        if frames
        else compound_smiles(pd.DataFrame(), "")
    )
    table, n_invalid = fingerprint_table(compounds.reset_index(drop=True))
    with atomic_file(path) as tmp:
        pq.write_table(table, tmp)
    return table, n_invalid


def read_fingerprints(path: str | Path) -> tuple[pd.DataFrame, np.ndarray]:
    """The table's metadata columns and its ``(n, 256)`` uint8 packed fingerprints."""
    table = pq.read_table(path)
    meta = table.drop(["ecfp4"]).to_pandas()
    column = table.column("ecfp4").combine_chunks()
    if len(column) == 0:
        return meta, np.zeros((0, N_BYTES), np.uint8)
    start = column.offset * N_BYTES
    raw = np.frombuffer(column.buffers()[1], np.uint8)[start : start + len(column) * N_BYTES]
    return meta, raw.reshape(len(column), N_BYTES).copy()
