"""Signature stores for the connectivity tests: a tiny one made from arrays (for the formula
oracles) and one built from the small synthetic release (for the end-to-end tests)."""

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from l1000_assets.core.connectivity.store import SignatureStore, StoreWriter, column_order
from l1000_assets.core.evaluation.connectivity import rank_profiles


def make_store(path: Path, z: np.ndarray, index: pd.DataFrame, genes: pd.DataFrame):
    """A store of the signatures ``z`` ``(c, n)`` (values exact in float16) with ``index``
    (its columns sorted by perturbagen: :func:`store_order` gives ``z``'s rows in that
    order)."""
    path.mkdir(parents=True)
    z = np.asarray(z, np.float16).astype(np.float32)
    writer = StoreWriter(path, genes, len(z), "all")
    table = pa.Table.from_pandas(index, preserve_index=False)
    for c0 in range(0, len(z), 7):  # several blocks
        rows = slice(c0, c0 + 7)
        writer.write(rank_profiles(z[rows]).ranks, z[rows], table.slice(c0, len(z[rows])))
    writer.close({"test": True})
    return SignatureStore(path)


def store_order(index: pd.DataFrame) -> np.ndarray:
    """The rows of ``index`` in the store's column order."""
    return column_order(pa.Table.from_pandas(index, preserve_index=False))


def tiny_index(n_sig: int, rng: np.random.Generator) -> pd.DataFrame:
    cells = np.array(["A375", "MCF7", "PC3"])[rng.integers(0, 3, n_sig)]
    types = np.array(["trt_cp", "trt_sh"])[rng.integers(0, 2, n_sig)]
    perts = [f"P{i % 9}" for i in range(n_sig)]
    return pd.DataFrame(
        {
            "sig_id": [f"{c}:{p}:{i}" for i, (c, p) in enumerate(zip(cells, perts))],
            "pert_id": perts,
            "pert_iname": [f"name-{p}" for p in perts],
            "pert_type": types,
            "cell_id": cells,
            "pert_dose": 1.0,
            "pert_dose_unit": "uM",
            "pert_time": 24.0,
            "pert_time_unit": "h",
            "n_replicates": 3,
        }
    )


def tiny_genes(n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "gene_id": [str(1000 + i) for i in range(n)],
            "symbol": [f"GENE{i}" for i in range(n)],
            "is_landmark": np.arange(n) < n // 3,
        }
    )


@pytest.fixture
def tiny(tmp_path):
    """A 300-gene, 60-signature store of random z-scores (ties included) and its z."""
    rng = np.random.default_rng(5)
    z = rng.standard_normal((60, 300)).astype(np.float16).astype(np.float32)
    z[:, :20] = np.round(z[:, :20])  # equal z-scores: the tie rule matters
    z[3] = 0.0  # a flat signature: every weight 0
    index = tiny_index(60, rng)
    store = make_store(tmp_path / "store", z, index, tiny_genes(300))
    return store, z[store_order(index)]


@pytest.fixture(scope="session")
def small_meta(tmp_path_factory, small_release):
    """The small synthetic release's canonical tables, as release_metadata writes them."""
    from l1000_assets.core.lake.schema import instance_schema
    from l1000_assets.core.releases.local import open_release
    from l1000_assets.core.releases.reconcile import reconcile
    from l1000_assets.core.releases.schema import INSTANCE_COLUMNS

    meta = tmp_path_factory.mktemp("meta")
    release = open_release("synthetic", small_release.root)
    rec = reconcile(release)
    inst = pa.Table.from_pandas(rec.instances[INSTANCE_COLUMNS], preserve_index=False)
    pq.write_table(
        inst.replace_schema_metadata(None).cast(instance_schema()), meta / "instances.parquet"
    )
    release.genes.to_parquet(meta / "genes.parquet")
    release.perturbagens.to_parquet(meta / "perturbagens.parquet")
    return meta, release


@pytest.fixture(scope="session")
def small_store(tmp_path_factory, small_meta):
    from l1000_assets.core.connectivity.signatures import ReleaseInput, write_signature_store

    meta, release = small_meta
    out = tmp_path_factory.mktemp("connectivity") / "signatures"
    report = write_signature_store(
        [ReleaseInput("synthetic", release.matrix_path, meta / "instances.parquet")],
        release.genes,
        out,
    )
    return SignatureStore(out), report


@pytest.fixture(scope="session")
def small_reference(tmp_path_factory, small_store):
    from l1000_assets.core.connectivity.reference import Reference, write_reference

    store, _ = small_store
    out = tmp_path_factory.mktemp("connectivity") / "reference"
    report = write_reference(store, out, n_queries=150, seed=1)
    return Reference(out, store), report
