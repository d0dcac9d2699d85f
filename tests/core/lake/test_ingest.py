"""Release -> canonical metadata -> landmark Parquet lake, on real and synthetic files."""

import shutil

import duckdb
import h5py
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from l1000_assets.core.errors import L1000InputError
from l1000_assets.core.formats.gctx import MATRIX_NODE, GctxWriter
from l1000_assets.core.lake import ingest, parquet_pages
from l1000_assets.core.lake.ingest import (
    WRITERS,
    write_landmark_profiles,
    write_landmark_profiles_from_metadata,
)
from l1000_assets.core.lake.read import (
    landmark_matrix,
    read_canonical_instances,
    read_canonical_landmarks,
    read_profile_gene_ids,
)
from l1000_assets.core.lake.schema import (
    N_LANDMARKS,
    PROFILE_META_COLUMNS,
    instance_schema,
    profile_schema,
)
from l1000_assets.core.releases.local import find_matrix, open_release
from l1000_assets.core.releases.reconcile import SKIP, reconcile
from l1000_assets.core.releases.schema import canonical_instances
from l1000_assets.core.releases.synthetic import simulate_landmark_profiles

CORE_A_FILES = {
    "level4": "CORE_A_level4_ZSPCINF_n40x12328.gctx",
    "inst_info": "CORE_A_inst_info.txt",
    "gene_info": "gene_info_n12328.txt",
}


def _ingest(release, tmp_path, allow_non_zscores=False, **kwargs):
    rec = reconcile(release, **kwargs)
    cells = sorted(
        rec.instances.loc[rec.instances["profile_class"] != "control", "cell_id"].unique()
    )
    paths = {c: tmp_path / f"{c}.parquet" for c in cells}
    report = write_landmark_profiles(
        release, rec, paths, block_size=7, allow_non_zscores=allow_non_zscores
    )
    return rec, report, paths


def test_real_gctx_ingests_to_exactly_the_h5py_values(real_dir, tmp_path):
    release = open_release("CORE_A", real_dir, CORE_A_FILES)
    rec, report, paths = _ingest(release, tmp_path)
    assert report.rows_written == {"KJ100": 40}
    table = pq.read_table(paths["KJ100"])
    assert table.schema.field("landmarks").type.list_size == 978
    with h5py.File(real_dir / CORE_A_FILES["level4"], "r") as f:
        raw = f[MATRIX_NODE][()]
        row_ids = [r.decode() for r in f["0/META/ROW/id"][()]]
        col_ids = [c.decode() for c in f["0/META/COL/id"][()]]
    gene_order = read_profile_gene_ids(paths["KJ100"])
    assert gene_order == release.genes.loc[release.genes["is_landmark"], "gene_id"].tolist()
    cols = [col_ids.index(i) for i in table.column("inst_id").to_pylist()]
    rows = [row_ids.index(g) for g in gene_order]
    np.testing.assert_array_equal(landmark_matrix(table), raw[np.ix_(cols, rows)])
    assert set(table.column("pert_iname").to_pylist()) >= {"erythromycin", "fluphenazine"}


def test_real_gct_text_release(real_dir, tmp_path):
    release = open_release("LJP005", real_dir, {"level4": "LJP005_A375_24H_level4_n377x978.gct"})
    counts = release.instances["profile_class"].value_counts().to_dict()
    assert counts["control"] == 26 and counts["compound"] == 328
    # A level-3 plate despite its name: ingested only when allowed.
    _, report, paths = _ingest(release, tmp_path, allow_non_zscores=True)
    assert report.rows_written == {"A375": 351}
    assert report.controls_removed == {"A375": 26}
    table = pq.read_table(paths["A375"])
    assert set(table.column("pert_type").to_pylist()) == {"trt_cp", "trt_poscon"}
    assert np.isfinite(landmark_matrix(table)).all()


def test_a_real_level3_plate_named_level4_is_refused(real_dir, tmp_path):
    files = {"level4": "LJP005_A375_24H_level4_n377x978.gct"}
    release = open_release("LJP005", real_dir, files)
    with pytest.raises(L1000InputError, match="not level-4 z-scores") as caught:
        _ingest(release, tmp_path)
    message = str(caught.value)
    assert message.startswith(str(real_dir / files["level4"]))
    assert "no negative value" in message and "median" in message
    assert "samples from 'LJP005_A375_24H_X1_B19:" in message
    assert "convert them to z-scores first" in message and "allow_non_zscores" in message
    assert list(tmp_path.iterdir()) == []
    inst_path, genes_path = _canonical_tables(release, tmp_path / "meta")
    with pytest.raises(L1000InputError, match="not level-4 z-scores"):
        write_landmark_profiles_from_metadata(
            find_matrix(real_dir, files),
            read_canonical_instances(inst_path),
            read_canonical_landmarks(genes_path),
            {"A375": tmp_path / "A375.parquet"},
            release="LJP005",
        )
    assert not (tmp_path / "A375.parquet").exists()


def test_real_shrna_plate_problems_are_named(real_dir, tmp_path):
    """KD017 has no cell line column and lacks two landmarks: both are named, in turn."""
    for name in ("KD017_shRNA_plate_n374x976.gct", "gene_info_n12328.txt"):
        (tmp_path / name).symlink_to(real_dir / name)
    files = {"level4": "KD017_shRNA_plate_n374x976.gct", "gene_info": "gene_info_n12328.txt"}
    with pytest.raises(
        L1000InputError, match=r"KD017.*gct: instances: no column for \['cell_id'\]"
    ):
        open_release("KD017", tmp_path, files)
    gct = tmp_path / files["level4"]
    text = (real_dir / files["level4"]).read_text()
    # Give it a cell line column: GCT 1.3 column metadata is a row under the header.
    head, dims, header, *rest = text.splitlines()
    n_cols = len(header.split("\t")) - 4
    dims_parts = dims.split("\t")
    dims_parts[3] = str(int(dims_parts[3]) + 1)
    cell_row = "\t".join(["cell_id"] + ["na"] * 3 + ["HEK293T"] * n_cols)
    gct.unlink()
    gct.write_text("\n".join([head, "\t".join(dims_parts), header, cell_row, *rest]) + "\n")
    release = open_release("KD017", tmp_path, files)
    with pytest.raises(
        L1000InputError, match=r"KD017.*2 requested row id\(s\) are not in the file"
    ):
        reconcile(release)


def test_synthetic_release_lake_matches_simulation(small_release, small_config, tmp_path):
    release = open_release("synthetic", small_release.root)
    rec, report, paths = _ingest(release, tmp_path)
    inst, values = simulate_landmark_profiles(small_config)
    gene_ids = release.genes.loc[release.genes["is_landmark"], "gene_id"].tolist()
    file_order = pd.read_csv(small_release.gene_info, sep="\t", dtype=str)["pr_gene_id"][:978]
    reorder = pd.Index(file_order).get_indexer(gene_ids)
    by_id = pd.Series(np.arange(len(inst)), index=inst["inst_id"])
    treated = ~inst["pert_type"].str.startswith("ctl")
    assert report.total == int(treated.sum())
    for cell, path in paths.items():
        table = pq.read_table(path)
        assert set(table.column("cell_id").to_pylist()) == {cell}
        expected = values[by_id[table.column("inst_id").to_pylist()].to_numpy()][:, reorder]
        np.testing.assert_array_equal(landmark_matrix(table), expected)
        assert report.controls_removed[cell] == int((~treated & inst["cell_id"].eq(cell)).sum())


def _copy_release(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_metadata_without_profile_strict_and_skip(small_release, tmp_path):
    root = _copy_release(small_release.root, tmp_path / "r")
    inst_path = next(root.glob("*inst_info.txt"))
    lines = inst_path.read_text().splitlines()
    lines.append(lines[-1].replace(lines[-1].split("\t")[0], "GHOST_PLATE:Z99"))
    inst_path.write_text("\n".join(lines) + "\n")
    release = open_release("r", root)
    with pytest.raises(L1000InputError, match=r"inst_info\.txt: 1 inst_id.*'GHOST_PLATE:Z99'"):
        reconcile(release)
    rec = reconcile(release, on_bad_input=SKIP)
    assert rec.metadata_without_profile == ["GHOST_PLATE:Z99"]
    assert rec.report()["n_metadata_rows_without_profile"] == 1


def test_profile_without_metadata_strict_and_skip(small_release, tmp_path):
    root = _copy_release(small_release.root, tmp_path / "r")
    inst_path = next(root.glob("*inst_info.txt"))
    lines = inst_path.read_text().splitlines()
    dropped = lines.pop(5).split("\t")[0]
    inst_path.write_text("\n".join(lines) + "\n")
    release = open_release("r", root)
    with pytest.raises(L1000InputError, match=rf"gctx: 1 profile\(s\) have no row.*'{dropped}'"):
        reconcile(release)
    rec, report, _ = _ingest(release, tmp_path, on_bad_input=SKIP)
    assert rec.profiles_without_metadata == [dropped]
    assert dropped not in set(rec.instances["inst_id"])


def test_duplicate_inst_ids(small_release, tmp_path):
    root = _copy_release(small_release.root, tmp_path / "r")
    inst_path = next(root.glob("*inst_info.txt"))
    lines = inst_path.read_text().splitlines()
    inst_path.write_text("\n".join(lines + [lines[3]]) + "\n")
    with pytest.raises(L1000InputError, match="duplicate inst_id"):
        reconcile(open_release("r", root))


def test_schema_drift_names_the_file_and_the_columns(small_release, tmp_path):
    root = _copy_release(small_release.root, tmp_path / "r")
    inst_path = next(root.glob("*inst_info.txt"))
    inst_path.write_text(inst_path.read_text().replace("cell_id", "cell_line_name", 1))
    with pytest.raises(
        L1000InputError, match=r"inst_info\.txt: instances: no column for \['cell_id'\]"
    ):
        open_release("r", root)


def test_truncated_gctx_keeps_going_nowhere(small_release, tmp_path):
    root = _copy_release(small_release.root, tmp_path / "r")
    gctx = next(root.glob("*.gctx"))
    data = gctx.read_bytes()
    gctx.write_bytes(data[: len(data) // 3])
    with pytest.raises(L1000InputError, match=r"\.gctx: .*truncated or corrupt"):
        reconcile(open_release("r", root))


def test_cmap_beta_column_names(tmp_path):
    """LINCS 2020 renames columns (sample_id, cell_iname, cmap_name, feature_space...)."""
    genes = [str(10 + i) for i in range(1000)]
    pd.DataFrame(
        {
            "gene_id": genes,
            "gene_symbol": [f"S{g}" for g in genes],
            "feature_space": ["landmark"] * 978 + ["inferred"] * 22,
        }
    ).to_csv(tmp_path / "geneinfo_beta.txt", sep="\t", index=False)
    samples = ["P1:A01", "P1:A02", "P1:A03"]
    pd.DataFrame(
        {
            "sample_id": samples,
            "cell_iname": ["HELA", "HELA", "HELA"],
            "cmap_name": ["drugA", "drugB", "DMSO"],
            "pert_id": ["BRD-A", "BRD-B", "DMSO"],
            "pert_type": ["trt_cp", "trt_cp", "ctl_vehicle"],
            "pert_dose": ["10", "-666", ""],
        }
    ).to_csv(tmp_path / "instinfo_beta.txt", sep="\t", index=False)
    pd.DataFrame(
        {
            "pert_id": ["BRD-A", "BRD-A"],
            "cmap_name": ["drugA", "drugA"],
            "target": ["EGFR", "ERBB2"],
            "moa": ["EGFR inhibitor", "EGFR inhibitor"],
        }
    ).to_csv(tmp_path / "compoundinfo_beta.txt", sep="\t", index=False)
    values = np.arange(3 * 1000, dtype=np.float32).reshape(3, 1000)
    with GctxWriter(tmp_path / "level4_beta_trt_cp_n3x1000.gctx", genes[::-1], 3) as w:
        w.write_block(samples, values[:, ::-1])
    release = open_release(
        "beta",
        tmp_path,
        {
            "level4": "level4_beta_trt_cp_n3x1000.gctx",
            "inst_info": "instinfo_beta.txt",
            "gene_info": "geneinfo_beta.txt",
            "pert_info": "compoundinfo_beta.txt",
        },
    )
    inst = release.instances
    assert inst["cell_id"].tolist() == ["HELA"] * 3
    assert inst["pert_iname"].tolist() == ["drugA", "drugB", "DMSO"]
    assert inst["pert_dose"].isna().tolist() == [False, True, True]
    assert release.perturbagens.set_index("pert_id").loc["BRD-A", "target"] == "EGFR|ERBB2"
    # Counting numbers stand in for z-scores here, so they are allowed.
    _, report, paths = _ingest(release, tmp_path / "out", allow_non_zscores=True)
    assert report.rows_written == {"HELA": 2}
    np.testing.assert_array_equal(landmark_matrix(pq.read_table(paths["HELA"])), values[:2, :978])


# --------------------------------------------------------------------------------------
# The lake from the canonical metadata tables (what the landmark_profiles asset runs)
# --------------------------------------------------------------------------------------
def _canonical_tables(release, directory):
    """instances.parquet and genes.parquet, written as release_metadata writes them."""
    rec = reconcile(release)
    directory.mkdir(parents=True, exist_ok=True)
    inst = release.instances[release.instances["inst_id"].isin(rec.instances["inst_id"])]
    inst.to_parquet(directory / "instances.parquet", index=False)
    release.genes.to_parquet(directory / "genes.parquet", index=False)
    return directory / "instances.parquet", directory / "genes.parquet"


def test_a_genes_table_with_unmarked_landmarks_names_them(small_release, tmp_path):
    release = open_release("synthetic", small_release.root)
    _, genes_path = _canonical_tables(release, tmp_path / "meta")
    genes = pd.read_parquet(genes_path)
    unmarked = genes.loc[genes["landmark_index"].isin([3, 500, 977]), "gene_id"].tolist()
    genes.loc[genes["landmark_index"].isin([3, 500, 977]), "is_landmark"] = False
    genes.to_parquet(genes_path, index=False)
    with pytest.raises(L1000InputError, match="975 landmark genes marked, expected 978") as caught:
        read_canonical_landmarks(genes_path)
    message = str(caught.value)
    assert all(f"'{g}'" in message for g in unmarked) and "3, 500, 977" in message


def _treated_cells(instances):
    treated = instances.filter(pc.not_equal(instances["profile_class"], "control"))
    return sorted(set(treated["cell_id"].to_pylist()))


@pytest.mark.parametrize("writer", WRITERS)
@pytest.mark.parametrize("block_size", [100, 1500])
def test_lake_from_canonical_metadata_is_exactly_the_h5py_values(
    small_release, tmp_path, monkeypatch, block_size, writer
):
    release = open_release("synthetic", small_release.root)
    inst_path, genes_path = _canonical_tables(release, tmp_path / "meta")
    instances = read_canonical_instances(inst_path)
    gene_ids = read_canonical_landmarks(genes_path)
    assert gene_ids == release.genes.loc[release.genes["is_landmark"], "gene_id"].tolist()
    cells = _treated_cells(instances)
    paths = {c: tmp_path / "new" / f"{c}.parquet" for c in cells}
    # Pages of 7 rows, row groups of 40 and small blocks (100 samples; or 1500, read as
    # 1000: whole chunks of the file's 1000 samples) in two buffers: pages and row groups
    # span blocks, each buffer is read into again many times while pages of the last
    # block are still being written from it.
    monkeypatch.setattr(ingest, "_PAGE_BYTES", 7 * 978 * 4)
    report = write_landmark_profiles_from_metadata(
        find_matrix(small_release.root),
        instances,
        gene_ids,
        paths,
        release="synthetic",
        metadata_path=inst_path,
        block_size=block_size,
        row_group_rows=40,
        budget_bytes=1,
        writer=writer,
    )
    old_paths = {c: tmp_path / "old" / f"{c}.parquet" for c in cells}
    old = write_landmark_profiles(release, reconcile(release), old_paths)
    assert report.rows_written == old.rows_written
    assert report.controls_removed == old.controls_removed
    assert report.n_skipped == 0
    with h5py.File(small_release.level4, "r") as f:
        raw = f[MATRIX_NODE][()]
        col_index = {c.decode(): i for i, c in enumerate(f["0/META/COL/id"][()])}
        row_index = {r.decode(): i for i, r in enumerate(f["0/META/ROW/id"][()])}
    rows = [row_index[g] for g in gene_ids]
    for cell, path in paths.items():
        table = pq.read_table(path)
        assert table.equals(pq.read_table(old_paths[cell]))
        assert table.schema.equals(profile_schema(gene_ids))  # field, nullability, metadata
        row_groups = [
            pq.read_metadata(path).row_group(i)
            for i in range(pq.read_metadata(path).num_row_groups)
        ]
        assert [g.num_rows for g in row_groups] == [40] * (table.num_rows // 40) + (
            [table.num_rows % 40] if table.num_rows % 40 else []
        )
        # The profile columns keep their statistics (min/max of cell_id: the cell line).
        stats = row_groups[0].column(table.schema.get_field_index("cell_id")).statistics
        assert (stats.min, stats.max) == (cell, cell)
        assert read_profile_gene_ids(path) == gene_ids
        cols = [col_index[i] for i in table.column("inst_id").to_pylist()]
        assert cols == sorted(cols)
        np.testing.assert_array_equal(landmark_matrix(table), raw[np.ix_(cols, rows)])


def test_canonical_metadata_disagreements_strict_and_skip(small_release, tmp_path):
    root = small_release.root
    inst_path, genes_path = _canonical_tables(open_release("r", root), tmp_path / "meta")
    instances = read_canonical_instances(inst_path)
    gene_ids = read_canonical_landmarks(genes_path)
    treated = np.flatnonzero(
        pc.not_equal(instances["profile_class"], "control").to_numpy(zero_copy_only=False)
    )
    dropped = instances["inst_id"][treated[0]].as_py()
    ghost = instances.slice(treated[1], 1)
    ghost = ghost.set_column(0, "inst_id", pa.array(["GHOST_PLATE:Z99"]))
    repeated = instances.slice(treated[2], 1)
    without_dropped = instances.filter(pc.not_equal(instances["inst_id"], dropped))
    cells = _treated_cells(instances)
    paths = {c: tmp_path / "lake" / f"{c}.parquet" for c in cells}

    def ingest(table, **kwargs):
        return write_landmark_profiles_from_metadata(
            find_matrix(root),
            table,
            gene_ids,
            paths,
            release="r",
            metadata_path=inst_path,
            block_size=64,
            **kwargs,
        )

    with pytest.raises(
        L1000InputError,
        match=rf"instances\.parquet: duplicate inst_id.*"
        rf"'{repeated['inst_id'][0]}'",
    ):
        ingest(pa.concat_tables([instances, repeated]))
    with pytest.raises(
        L1000InputError,
        match=rf"gctx: 1 profile\(s\) have no row in "
        rf"instances\.parquet: '{dropped}'",
    ):
        ingest(without_dropped)
    with pytest.raises(
        L1000InputError,
        match=r"instances\.parquet: 1 inst_id\(s\) have no "
        r"column in .*\.gctx: 'GHOST_PLATE:Z99'",
    ):
        ingest(pa.concat_tables([instances, ghost]))
    report = ingest(pa.concat_tables([without_dropped, ghost, repeated]), on_bad_input=SKIP)
    assert report.reconciliation["n_profiles_without_metadata"] == 1
    assert report.reconciliation["n_metadata_rows_without_profile"] == 1
    assert report.reconciliation["n_duplicate_inst_ids"] == 1
    assert report.n_skipped == 3
    written = [i for p in paths.values() for i in pq.read_table(p).column("inst_id").to_pylist()]
    assert len(written) == len(set(written)) == report.total == len(treated) - 1
    assert dropped not in written and "GHOST_PLATE:Z99" not in written


def test_canonical_instances_are_read_compact_and_ingest_holds_no_decoded_copy(
    small_release, tmp_path
):
    """The text columns but ``inst_id`` are read dictionary-encoded; the ingest keeps only
    row numbers per profile and decodes the profile columns a block at a time, so the
    Arrow memory it holds while writing is far below one decoded copy of them."""
    release = open_release("synthetic", small_release.root)
    inst_path, genes_path = _canonical_tables(release, tmp_path / "meta")
    instances = read_canonical_instances(inst_path)
    plain = pq.read_table(inst_path).cast(instance_schema())
    assert instances.schema.field("inst_id").type == pa.string()
    assert instances.schema.field("pert_dose").type == pa.float64()
    for name in ("pert_id", "cell_id", "profile_class", "rna_plate"):
        assert pa.types.is_dictionary(instances.schema.field(name).type)
    assert instances.cast(instance_schema()).equals(plain.replace_schema_metadata(None))
    decoded = plain.select(PROFILE_META_COLUMNS).nbytes
    assert instances.nbytes < 0.7 * plain.nbytes
    cells = _treated_cells(instances)
    before = pa.total_allocated_bytes()
    held = []
    report = write_landmark_profiles_from_metadata(
        find_matrix(small_release.root),
        instances,
        read_canonical_landmarks(genes_path),
        {c: tmp_path / "lake" / f"{c}.parquet" for c in cells},
        release="synthetic",
        metadata_path=inst_path,
        block_size=100,
        row_group_rows=40,
        progress=lambda *_: held.append(pa.total_allocated_bytes() - before),
    )
    assert report.total == pc.sum(pc.not_equal(plain["profile_class"], "control")).as_py()
    assert len(held) > 10 and max(held) < decoded / 3, (max(held), decoded)


def test_instances_in_chunks_with_different_dictionaries_give_the_same_lake(
    small_release, tmp_path
):
    release = open_release("synthetic", small_release.root)
    inst_path, genes_path = _canonical_tables(release, tmp_path / "meta")
    instances = read_canonical_instances(inst_path)
    gene_ids = read_canonical_landmarks(genes_path)
    cells = _treated_cells(instances)
    # Two halves, the second first, each encoded on its own (different dictionaries), and
    # one half as plain text: the writer must decode each row through its own chunk.
    n = instances.num_rows // 2
    first, second = instances.slice(0, n), instances.slice(n)
    second = pa.table(
        {
            c: pc.cast(second[c], pa.string()).combine_chunks().dictionary_encode()
            if pa.types.is_dictionary(second[c].type)
            else second[c]
            for c in second.column_names
        }
    )
    variants = {
        "one": instances,
        "chunks": pa.concat_tables([second, first]),
        "plain": instances.cast(instance_schema()),
    }
    tables = {}
    for name, table in variants.items():
        paths = {c: tmp_path / name / f"{c}.parquet" for c in cells}
        write_landmark_profiles_from_metadata(
            find_matrix(small_release.root),
            table,
            gene_ids,
            paths,
            release="synthetic",
            metadata_path=inst_path,
            block_size=300,
            row_group_rows=50,
        )
        tables[name] = {c: pq.read_table(p) for c, p in paths.items()}
    for cell in cells:
        assert tables["chunks"][cell].equals(tables["one"][cell])
        assert tables["plain"][cell].equals(tables["one"][cell])
        assert tables["one"][cell].schema.equals(profile_schema(gene_ids))


def test_codes_of_plain_and_dictionary_columns_with_nulls():
    values = ["b", None, "a", "z", "b", None]
    for column in (
        pa.chunked_array([pa.array(values, pa.string())]),
        pa.chunked_array([pa.array(values).dictionary_encode()]),
        pa.chunked_array([pa.array(values[:3]), pa.array(values[3:])]),
    ):
        assert ingest._codes(column, ["a", "b"]).tolist() == [1, -1, 0, -1, 1, -1]
    empty = pa.chunked_array(
        [
            pa.DictionaryArray.from_arrays(
                pa.array([None, None], pa.int32()), pa.array([], pa.string())
            )
        ]
    )
    assert ingest._codes(empty, ["a"]).tolist() == [-1, -1]


def _tiny_release(tmp_path, values, order):
    """A GCTX of 1,000 genes stored in ``order`` of gene id (descending: the landmarks are
    no slice of the rows) and its canonical instances: treated profiles of two interleaved
    cell lines (no run of consecutive columns) and a control."""
    genes = [str(10 + i) for i in range(1000)]
    samples = [f"P1:A0{i}" for i in range(1, 7)]
    path = tmp_path / "tiny_n6x1000.gctx"
    step = 1 if order == "ascending" else -1
    with GctxWriter(path, genes[::step], len(samples)) as w:
        w.write_block(samples, values[:, ::step])
    inst = canonical_instances(
        pd.DataFrame(
            {
                "inst_id": samples,
                "pert_id": ["BRD-A", "BRD-B", "BRD-C", "BRD-D", "BRD-E", "DMSO"],
                "pert_type": ["trt_cp", "trt_cp", "trt_sh", "trt_cp", "trt_oe", "ctl_vehicle"],
                "cell_id": ["HELA", "A549", "HELA", "A549", "HELA", "HELA"],
            },
            dtype="string",
        ),
        "tiny",
    )
    return path, pa.Table.from_pandas(inst, preserve_index=False), genes[:978]


@pytest.mark.parametrize("writer", WRITERS)
@pytest.mark.parametrize("order", ["ascending", "descending"])
def test_landmarks_in_any_row_order_and_non_finite_values(tmp_path, order, writer):
    values = np.arange(6 * 1000, dtype=np.float32).reshape(6, 1000)
    path, instances, gene_ids = _tiny_release(tmp_path, values, order)
    out = {"HELA": tmp_path / "HELA.parquet", "A549": tmp_path / "A549.parquet"}
    # Counting numbers stand in for z-scores here, so they are allowed.
    report = write_landmark_profiles_from_metadata(
        path,
        instances,
        gene_ids,
        out,
        release="tiny",
        block_size=4,
        writer=writer,
        allow_non_zscores=True,
    )
    assert report.rows_written == {"HELA": 3, "A549": 2}
    assert report.controls_removed == {"HELA": 1, "A549": 0}
    hela = pq.read_table(out["HELA"])
    assert hela.column("pert_type").to_pylist() == ["trt_cp", "trt_sh", "trt_oe"]
    np.testing.assert_array_equal(landmark_matrix(hela), values[[0, 2, 4], :978])
    np.testing.assert_array_equal(landmark_matrix(pq.read_table(out["A549"])), values[[1, 3], :978])
    values[3, 500] = np.inf
    path, instances, gene_ids = _tiny_release(tmp_path, values, order)
    with pytest.raises(L1000InputError, match=r"tiny_n6x1000\.gctx: non-finite .* 'P1:A04'"):
        write_landmark_profiles_from_metadata(
            path, instances, gene_ids, out, release="tiny", writer=writer, allow_non_zscores=True
        )


def test_gct_text_release_from_canonical_metadata(real_dir, tmp_path):
    files = {"level4": "LJP005_A375_24H_level4_n377x978.gct"}
    inst_path, genes_path = _canonical_tables(open_release("LJP005", real_dir, files), tmp_path)
    out = {"A375": tmp_path / "A375.parquet"}
    report = write_landmark_profiles_from_metadata(
        find_matrix(real_dir, files),
        read_canonical_instances(inst_path),
        read_canonical_landmarks(genes_path),
        out,
        release="LJP005",
        allow_non_zscores=True,  # a level-3 plate despite its name
    )
    assert report.rows_written == {"A375": 351} and report.controls_removed == {"A375": 26}
    assert np.isfinite(landmark_matrix(pq.read_table(out["A375"]))).all()


# --------------------------------------------------------------------------------------
# The lake file writer: landmark pages written directly, profile columns by Arrow
# --------------------------------------------------------------------------------------
def test_thrift_codec_gives_back_arrows_footer_exactly(tmp_path):
    """The footer codec the lake writer splices row groups with: decoding and encoding an
    Arrow-written footer (statistics, dictionary pages, size statistics) is the identity."""
    table = pa.table(
        {
            "s": pa.array(["b", None, "a"] * 50),
            "d": [1.5, None, -2.0] * 50,
            "v": pa.array([[1.0, 2.0]] * 150, pa.list_(pa.float32(), 2)),
        }
    )
    path = tmp_path / "t.parquet"
    pq.write_table(table, path, row_group_size=40)
    data = path.read_bytes()
    footer, start = parquet_pages._parquet_footer(data)
    assert parquet_pages._thrift_struct(footer) == data[start:-8]
    assert footer[3][1] == 150 and len(footer[4][1][1]) == 4  # num_rows, row groups


@pytest.mark.parametrize("writer", WRITERS)
@pytest.mark.parametrize("compression", ["snappy", "zstd", "gzip", "lz4"])
def test_lake_files_read_back_with_every_codec_in_pyarrow_and_duckdb(tmp_path, compression, writer):
    rng = np.random.default_rng(3)
    values = rng.standard_normal((6, 1000)).astype(np.float32)
    path, instances, gene_ids = _tiny_release(tmp_path, values, "ascending")
    out = {
        "HELA": tmp_path / "HELA.parquet",
        "A549": tmp_path / "A549.parquet",
        "MCF7": tmp_path / "MCF7.parquet",
    }  # no profiles: an empty file
    report = write_landmark_profiles_from_metadata(
        path, instances, gene_ids, out, release="tiny", compression=compression, writer=writer
    )
    assert report.rows_written == {"HELA": 3, "A549": 2, "MCF7": 0}
    hela = pq.read_table(out["HELA"])
    assert hela.schema.equals(profile_schema(gene_ids))
    np.testing.assert_array_equal(landmark_matrix(hela), values[[0, 2, 4], :978])
    column = pq.read_metadata(out["HELA"]).row_group(0).column(hela.num_columns - 1)
    assert column.compression == compression.upper()
    empty = pq.read_table(out["MCF7"])
    assert empty.num_rows == 0 and empty.schema.equals(profile_schema(gene_ids))
    # As the lake views read it (sql/010_lake_views.sql).
    rows = (
        duckdb.connect()
        .execute(
            "SELECT inst_id, landmarks::FLOAT[978] FROM read_parquet(?) ORDER BY inst_id",
            [str(out["A549"])],
        )
        .fetchall()
    )
    assert [r[0] for r in rows] == ["P1:A02", "P1:A04"]
    np.testing.assert_array_equal(np.array([r[1] for r in rows], np.float32), values[[1, 3], :978])


def test_unknown_codec_is_refused(tmp_path):
    path, instances, gene_ids = _tiny_release(
        tmp_path, np.zeros((6, 1000), np.float32), "ascending"
    )
    with pytest.raises(ValueError, match="compression must be one of"):
        write_landmark_profiles_from_metadata(
            path,
            instances,
            gene_ids,
            {"HELA": tmp_path / "HELA.parquet"},
            release="tiny",
            compression="lzo",
        )


def test_unknown_writer_is_refused(tmp_path):
    path, instances, gene_ids = _tiny_release(
        tmp_path, np.zeros((6, 1000), np.float32), "ascending"
    )
    with pytest.raises(ValueError, match="writer must be one of"):
        write_landmark_profiles_from_metadata(
            path,
            instances,
            gene_ids,
            {"HELA": tmp_path / "HELA.parquet"},
            release="tiny",
            writer="parquet-go",
        )


@pytest.mark.parametrize("writer", WRITERS)
def test_lake_files_read_back_in_polars_as_in_pyarrow(small_release, tmp_path, writer):
    """The README's third reader: polars gives the values and profile columns pyarrow
    gives, for files of several row groups with null doses."""
    pl = pytest.importorskip("polars")
    release = open_release("synthetic", small_release.root)
    inst_path, genes_path = _canonical_tables(release, tmp_path / "meta")
    instances = read_canonical_instances(inst_path)
    dose = instances.schema.get_field_index("pert_dose")
    every_third = pa.array(np.arange(instances.num_rows) % 3 == 0)
    instances = instances.set_column(
        dose, "pert_dose", pc.if_else(every_third, None, instances["pert_dose"])
    )
    cells = _treated_cells(instances)
    paths = {c: tmp_path / "lake" / f"{c}.parquet" for c in cells}
    write_landmark_profiles_from_metadata(
        find_matrix(small_release.root),
        instances,
        read_canonical_landmarks(genes_path),
        paths,
        release="synthetic",
        row_group_rows=50,
        compression="zstd",
        writer=writer,
    )
    for path in paths.values():
        table = pq.read_table(path)
        frame = pl.read_parquet(path)
        assert frame.columns == table.column_names
        assert frame.height == table.num_rows > 50
        values = frame["landmarks"].to_numpy()
        assert values.dtype == np.float32
        np.testing.assert_array_equal(values, landmark_matrix(table))
        for name in PROFILE_META_COLUMNS:
            assert frame[name].to_list() == table.column(name).to_pylist(), name
        assert frame["pert_dose"].null_count() > 0


def _one_cell_release(tmp_path, n):
    """A GCTX of ``n`` treated profiles of one cell line x the 978 landmarks, and its
    canonical instances."""
    genes = [str(10 + i) for i in range(N_LANDMARKS)]
    samples = [f"P{i // 384}:A{i % 384:03d}" for i in range(n)]
    values = np.random.default_rng(5).standard_normal((n, N_LANDMARKS)).astype(np.float32)
    path = tmp_path / f"one_n{n}x978.gctx"
    with GctxWriter(path, genes, n, chunks=(1024, N_LANDMARKS)) as w:
        w.write_block(samples, values)
    inst = canonical_instances(
        pd.DataFrame(
            {"inst_id": samples, "pert_id": "BRD-A", "pert_type": "trt_cp", "cell_id": "HELA"},
            dtype="string",
        ),
        "one",
    )
    return path, pa.Table.from_pandas(inst, preserve_index=False), genes, values


def test_pyarrow_writer_settings_and_default_row_groups(tmp_path):
    """pyarrow's writer: the landmark values PLAIN in version-2 data pages, without a
    dictionary or statistics; the profile columns keep both; row groups of 8,192 rows by
    default (the fast writer: 2,048), fewer when many cell lines are written at once."""
    n = ingest.ROW_GROUP_ROWS["pyarrow"] + 8
    path, instances, gene_ids, values = _one_cell_release(tmp_path, n)
    sizes = {}
    for writer in WRITERS:
        out = tmp_path / writer / "HELA.parquet"
        write_landmark_profiles_from_metadata(
            path, instances, gene_ids, {"HELA": out}, release="one", writer=writer
        )
        np.testing.assert_array_equal(landmark_matrix(pq.read_table(out)), values)
        meta = pq.read_metadata(out)
        sizes[writer] = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    assert sizes["pyarrow"] == [8192, 8]
    assert sizes["fast"] == [2048] * 4 + [8]
    out = tmp_path / "pyarrow" / "HELA.parquet"
    group = pq.read_metadata(out).row_group(0)
    landmarks = group.column(group.num_columns - 1)
    assert landmarks.path_in_schema == "landmarks.list.element"
    assert not landmarks.has_dictionary_page and not landmarks.is_stats_set
    assert "PLAIN" in landmarks.encodings and "RLE_DICTIONARY" not in landmarks.encodings
    header, _ = parquet_pages._thrift_read(
        out.read_bytes(), landmarks.data_page_offset, parquet_pages.Compact.STRUCT
    )
    page_type = header[parquet_pages.PageHeader.TYPE][1]
    assert page_type == parquet_pages.PageType.DATA_PAGE_V2
    cell = group.column(PROFILE_META_COLUMNS.index("cell_id"))
    assert cell.has_dictionary_page and cell.is_stats_set
    # Many cell lines at once: smaller default row groups, their values held bounded.
    rows = ingest._resolve_row_group_rows("pyarrow", None, 100)
    assert rows < 8192 and 100 * rows * N_LANDMARKS * 4 <= ingest.PYARROW_OPEN_BYTES
    assert ingest._resolve_row_group_rows("pyarrow", 40, 100) == 40
