"""Query files: parsing, gene mapping, validation, ranking, the folder scan and the results
tables (no model needed: embeddings are made up here)."""

import os
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from l1000_assets.core.embeddings.vectors import vector_array
from l1000_assets.core.errors import L1000InputError
from l1000_assets.core.formats.gct import GctReader
from l1000_assets.core.formats.gctx import GctxWriter
from l1000_assets.core.formats.info_tables import read_info_table
from l1000_assets.core.lake.schema import N_LANDMARKS
from l1000_assets.core.readacross.folder import scan_queries
from l1000_assets.core.readacross.genes import GeneIndex
from l1000_assets.core.readacross.query_files import (
    DEFAULT_MAX_TEXT_BYTES,
    QueryOptions,
    QueryProfiles,
    read_query_file,
)
from l1000_assets.core.readacross.ranking import (
    ReadAcrossResult,
    check_unit_length,
    load_references,
    rank,
    read_annotations,
    top_k,
)
from l1000_assets.core.readacross.results import write_results
from l1000_assets.core.releases.schema import canonical_genes

LANDMARKS = [str(1000 + i) for i in range(N_LANDMARKS)]
OTHERS = [str(5000 + i) for i in range(40)]


def symbol(gene_id: str) -> str:
    return f"SYM{gene_id}"


@pytest.fixture(scope="module")
def genes() -> GeneIndex:
    table = pd.DataFrame(
        {
            "gene_id": LANDMARKS + OTHERS,
            "symbol": [symbol(g) for g in LANDMARKS + OTHERS],
            "is_landmark": [True] * N_LANDMARKS + [False] * len(OTHERS),
        }
    )
    # The model's input order differs from the genes table's order.
    order = list(np.random.default_rng(0).permutation(LANDMARKS))
    return GeneIndex.from_genes(table, order, "card.json")


def profiles(n: int = 3, seed: int = 0) -> pd.DataFrame:
    """Genes (rows, by Entrez id) x profiles of z-score-like values."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        rng.normal(size=(N_LANDMARKS, n)).round(4),
        index=LANDMARKS,
        columns=[f"P{i}" for i in range(n)],
    )


def expected_values(df: pd.DataFrame, genes: GeneIndex) -> np.ndarray:
    return df.reindex(list(genes.gene_order)).fillna(0).to_numpy(np.float32).T


def test_csv_genes_as_rows_by_entrez_id(tmp_path, genes):
    df = profiles()
    df.index.name = "gene_id"
    df.to_csv(tmp_path / "q.csv")
    q = read_query_file(tmp_path / "q.csv", genes)
    assert q.profile_ids == ["P0", "P1", "P2"]
    np.testing.assert_allclose(q.values, expected_values(df, genes), atol=1e-6)
    assert q.missing == [] and q.n_landmarks_used == N_LANDMARKS and q.warnings == []


def test_tsv_profiles_as_rows_by_symbol_with_extra_genes_and_missing_ones(tmp_path, genes):
    df = profiles(2)
    dropped = LANDMARKS[:7]
    kept = df.drop(index=dropped)
    extra = pd.DataFrame(1.0, index=OTHERS[:5], columns=df.columns)  # known, not landmarks
    both = pd.concat([kept, extra])
    both.index = [symbol(g).lower() for g in both.index]  # symbols, any case
    both.T.to_csv(tmp_path / "q.tsv", sep="\t", index_label="profile")
    q = read_query_file(tmp_path / "q.tsv", genes)
    assert q.profile_ids == ["P0", "P1"]
    assert sorted(q.missing) == sorted(dropped)
    assert q.ignored == 5
    expected = expected_values(df.drop(index=dropped), genes)
    np.testing.assert_allclose(q.values, expected, atol=1e-6)


def test_gct_and_gctx(tmp_path, genes):
    df = profiles(4, seed=1)
    lines = [
        "#1.2",
        f"{N_LANDMARKS}\t{df.shape[1]}",
        "\t".join(["Name", "Description", *df.columns]),
    ]
    lines += ["\t".join([g, "na", *map(str, row)]) for g, row in zip(df.index, df.to_numpy())]
    (tmp_path / "q.gct").write_text("\n".join(lines) + "\n")
    q = read_query_file(tmp_path / "q.gct", genes)
    np.testing.assert_allclose(q.values, expected_values(df, genes), atol=1e-6)

    path = tmp_path / "q.gctx"
    rows = LANDMARKS + OTHERS[:3]
    values = np.vstack([df.to_numpy(), np.ones((3, 4))]).T.astype(np.float32)
    with GctxWriter(path, rows, 4, chunks=(2, 100)) as w:
        w.write_block(list(df.columns), values)
    calls = []
    q = read_query_file(path, genes, progress=lambda d, t, e: calls.append((d, t)))
    np.testing.assert_allclose(q.values, expected_values(df, genes), atol=1e-6)
    assert q.ignored == 3 and calls and calls[-1] == (4, 4)


def with_value(df: pd.DataFrame, gene: str, value, profile: str | None = None) -> pd.DataFrame:
    df = df.astype(object) if isinstance(value, str) else df.copy()
    df.loc[gene, profile if profile else df.columns] = value
    return df


def write_csv(path, df):
    df.to_csv(path, index_label="gene")
    return path


@pytest.mark.parametrize(
    "mutate, message",
    [
        (
            lambda df: df.rename(index={LANDMARKS[0]: "NOT_A_GENE", LANDMARKS[1]: "ALSO_NOT"}),
            r"2 unknown gene identifier\(s\).*'NOT_A_GENE', 'ALSO_NOT'",
        ),
        (lambda df: df.iloc[100:], r"100 of 978 landmark genes missing, more than the 50 allowed"),
        (
            lambda df: df.rename(index={LANDMARKS[1]: symbol(LANDMARKS[0])}),
            r"1 landmark gene\(s\) given more than once: 1000 \(SYM1000\) as '1000' and 'SYM1000'",
        ),
        (
            lambda df: with_value(df, LANDMARKS[5], "high", "P0"),
            r"non-numeric value\(s\): 'high' \(row '1005', column 'P0'\)",
        ),
        (
            lambda df: with_value(df, LANDMARKS[3], np.inf),
            r"non-finite values \(NaN, inf or empty\) in profile\(s\) 'P0', 'P1', 'P2'",
        ),
        (
            lambda df: with_value(df, LANDMARKS[3], np.nan, "P1"),
            r"non-finite values .* in profile\(s\) 'P1'$",
        ),
        (lambda df: df.set_axis(["A", "A", "B"], axis=1), r"duplicate profile id\(s\): 'A'"),
        (lambda df: df.iloc[:, :0], r"one column only: expected a gene column and one column per"),
    ],
)
def test_bad_csv_is_refused_naming_file_and_problem(tmp_path, genes, mutate, message):
    path = write_csv(tmp_path / "bad.csv", mutate(profiles()))
    with pytest.raises(L1000InputError, match=message) as err:
        read_query_file(path, genes)
    assert str(err.value).startswith(str(path))


def test_empty_and_unsupported_files(tmp_path, genes):
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(L1000InputError, match="empty.csv: empty file"):
        read_query_file(tmp_path / "empty.csv", genes)
    (tmp_path / "header.tsv").write_text("gene\tP0\n")
    with pytest.raises(L1000InputError, match="header.tsv: .*no (data|genes)"):
        read_query_file(tmp_path / "header.tsv", genes)
    (tmp_path / "q.xlsx").write_bytes(b"PK")
    with pytest.raises(L1000InputError, match=r"unsupported file type '\.xlsx'"):
        read_query_file(tmp_path / "q.xlsx", genes)
    (tmp_path / "broken.gctx").write_bytes(b"not hdf5 at all")
    with pytest.raises(L1000InputError, match="broken.gctx: not a readable HDF5"):
        read_query_file(tmp_path / "broken.gctx", genes)
    (tmp_path / "broken.gct").write_text("#1.2\nnonsense\n")
    with pytest.raises(L1000InputError, match="broken.gct: not a valid GCT"):
        read_query_file(tmp_path / "broken.gct", genes)


def test_missing_genes_threshold_and_unknown_genes_allowed(tmp_path, genes):
    df = profiles().iloc[30:]
    df = pd.concat([df, pd.DataFrame(0.5, index=["MYSTERY"], columns=df.columns)])
    path = write_csv(tmp_path / "q.csv", df)
    with pytest.raises(L1000InputError, match="unknown gene") as err:
        read_query_file(path, genes)
    # The message says how to go on anyway, in the asset's config and on the command line.
    assert "'MYSTERY'; set allow_unknown_genes (l1000 read-across --allow-unknown-genes)" in str(
        err.value
    )
    with pytest.raises(
        L1000InputError, match="30 of 978 landmark genes missing, more than the 20 allowed"
    ):
        read_query_file(path, genes, QueryOptions(max_missing=20, allow_unknown=True))
    q = read_query_file(path, genes, QueryOptions(max_missing=30, allow_unknown=True))
    assert len(q.missing) == 30 and q.unknown == ["MYSTERY"]
    assert (q.values[:, [genes.position[g] for g in q.missing]] == 0).all()
    # Missing genes are listed by id and symbol.
    shown = genes.describe_list(q.missing, limit=3)
    assert shown == ", ".join(f"{g} ({symbol(g)})" for g in q.missing[:3]) + " and 27 more"


def test_values_that_are_not_z_scores_are_refused_unless_allowed(tmp_path, genes):
    df = profiles(2)
    df["P0"] = np.abs(df["P0"]) * 100 + 5  # like raw expression
    path = write_csv(tmp_path / "q.csv", df)
    with pytest.raises(L1000InputError, match="not level-4 z-scores") as caught:
        read_query_file(path, genes)
    message = str(caught.value)
    assert message.startswith(str(path)) and "no negative value" in message
    assert "'P0'" in message and "'P1'" not in message
    assert "convert them to z-scores first" in message and "--allow-non-zscores" in message
    q = read_query_file(path, genes, QueryOptions(allow_non_zscores=True))
    assert all("'P0'" in w for w in q.warnings)
    assert "no negative value" in q.warnings[0] and "median" in q.warnings[1]


def test_values_far_outside_any_z_score_are_refused_even_when_allowed(tmp_path, genes):
    df = profiles(2)
    df["P1"] = df["P1"] * 1e30  # finite, but embeds to a zero vector
    path = write_csv(tmp_path / "q.csv", df)
    for options in (QueryOptions(), QueryOptions(allow_non_zscores=True)):
        with pytest.raises(L1000InputError, match=r"far outside any z-score.*'P1'$"):
            read_query_file(path, genes, options)


def test_files_above_the_size_limit_and_binary_files_are_refused_unread(tmp_path, genes):
    path = write_csv(tmp_path / "q.csv", profiles(3))
    size = path.stat().st_size
    with pytest.raises(
        L1000InputError, match=rf"{size:,} bytes, more than the 1,000 .*--max-bytes"
    ):
        read_query_file(path, genes, QueryOptions(max_bytes=1000))
    assert read_query_file(path, genes, QueryOptions(max_bytes=size)).profile_ids
    garbage = tmp_path / "garbage.csv"
    garbage.write_bytes(np.random.default_rng(0).bytes(200_000))
    with pytest.raises(L1000InputError, match="garbage.csv: binary data, not a text table"):
        read_query_file(garbage, genes)
    # Default limits: text files are parsed whole, GCTX files streamed.
    for name in ("big.tsv", "big.gctx"):
        with open(tmp_path / name, "wb") as f:
            f.truncate(DEFAULT_MAX_TEXT_BYTES + 1)  # sparse: nothing is written
    with pytest.raises(L1000InputError, match=f"more than the {DEFAULT_MAX_TEXT_BYTES:,}"):
        read_query_file(tmp_path / "big.tsv", genes)
    with pytest.raises(L1000InputError, match="big.gctx: not a readable HDF5"):
        read_query_file(tmp_path / "big.gctx", genes)


@pytest.fixture(scope="module")
def real_genes(real_dir) -> GeneIndex:
    """The real genes table (12,328 genes) and its 978 landmarks in the lake's order."""
    table = canonical_genes(read_info_table(real_dir / "gene_info_n12328.txt"))
    order = table.loc[table["is_landmark"], "gene_id"].tolist()
    return GeneIndex.from_genes(table, order, "card.json")


def _by_gene(values: np.ndarray, gene_ids, genes: GeneIndex) -> np.ndarray:
    """Profiles x genes of a file laid out in the model's gene order (0 where absent)."""
    out = np.zeros((values.shape[0], N_LANDMARKS), np.float32)
    for column, gene in enumerate(gene_ids):
        if gene in genes.position:
            out[:, genes.position[gene]] = values[:, column]
    return out


def test_a_real_level3_plate_keyed_by_probe_ids(real_dir, real_genes):
    """LJP005: row ids are probes (200814_at), genes are in pr_gene_id; level 3 values."""
    path = real_dir / "LJP005_A375_24H_level4_n377x978.gct"
    with pytest.raises(L1000InputError, match="not level-4 z-scores") as caught:
        read_query_file(path, real_genes)
    assert "377 profile(s) with no negative value" in str(caught.value)
    q = read_query_file(path, real_genes, QueryOptions(allow_non_zscores=True))
    assert q.n_landmarks_used == N_LANDMARKS and q.unknown == [] and len(q.profile_ids) == 377
    gct = GctReader(path, row_id_field="pr_gene_id")
    np.testing.assert_array_equal(q.values, _by_gene(gct.values, gct.row_ids, real_genes))


def _probe_copy(real_dir, tmp_path, blank_gene_ids: bool):
    """KD017 with its row ids replaced by probe ids (and, if asked, no pr_gene_id)."""
    lines = (real_dir / "KD017_shRNA_plate_n374x976.gct").read_text().splitlines()
    n_rows, _, _, n_col_meta = map(int, lines[1].split("\t"))
    first = 3 + n_col_meta
    for i in range(first, first + n_rows):
        fields = lines[i].split("\t")
        fields[0] = f"{200000 + i}_at"
        if blank_gene_ids:
            fields[1] = "-666"
        lines[i] = "\t".join(fields)
    path = tmp_path / f"KD017_probes{'_symbols' if blank_gene_ids else ''}.gct"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_real_shrna_plate_by_gene_ids_probe_ids_or_symbols(real_dir, real_genes, tmp_path):
    """KD017: real z-scores keyed by Entrez id; the same read by pr_gene_id or
    pr_gene_symbol when its row ids are probes, as GCT and as GCTX."""
    q = read_query_file(real_dir / "KD017_shRNA_plate_n374x976.gct", real_genes)
    assert q.n_landmarks_used == 976 and len(q.missing) == 2 and len(q.profile_ids) == 374
    by_id = read_query_file(_probe_copy(real_dir, tmp_path, False), real_genes)
    assert by_id.profile_ids == q.profile_ids and by_id.missing == q.missing
    np.testing.assert_array_equal(by_id.values, q.values)
    # By symbol: 16 of the plate's symbols are newer names than the genes table's.
    by_symbol = read_query_file(
        _probe_copy(real_dir, tmp_path, True), real_genes, QueryOptions(allow_unknown=True)
    )
    assert len(by_symbol.unknown) == 16 and by_symbol.n_landmarks_used == 960
    used = [real_genes.position[g] for g in real_genes.gene_order if g not in by_symbol.missing]
    np.testing.assert_array_equal(by_symbol.values[:, used], q.values[:, used])
    gct = GctReader(_probe_copy(real_dir, tmp_path, False))
    path = tmp_path / "KD017_probes.gctx"
    meta = gct.row_metadata(["pr_gene_id", "pr_gene_symbol"]).astype(str).reset_index(drop=True)
    with GctxWriter(path, gct.row_ids.tolist(), len(gct.col_ids), row_metadata=meta) as w:
        w.write_block(gct.col_ids.tolist(), gct.values)
    np.testing.assert_array_equal(read_query_file(path, real_genes).values, q.values)


def test_model_gene_order_must_be_the_landmark_genes():
    table = pd.DataFrame(
        {
            "gene_id": LANDMARKS + OTHERS,
            "symbol": LANDMARKS + OTHERS,
            "is_landmark": [True] * N_LANDMARKS + [False] * len(OTHERS),
        }
    )
    with pytest.raises(
        L1000InputError,
        match=r"card.json: model/gene-order mismatch.*2 differ: "
        r"'1000', '5000'",
    ):
        GeneIndex.from_genes(table, [OTHERS[0], *LANDMARKS[1:]], "card.json")
    with pytest.raises(L1000InputError, match="gene_order has 977 entries"):
        GeneIndex.from_genes(table, LANDMARKS[1:], "card.json")


def test_top_k_matches_a_full_sort():
    rng = np.random.default_rng(3)
    refs = rng.normal(size=(500, 16)).astype(np.float32)
    queries = rng.normal(size=(37, 16)).astype(np.float32)
    idx, sims = top_k(queries, refs, 10, block=8)
    full = queries @ refs.T
    np.testing.assert_array_equal(idx, np.argsort(-full, axis=1)[:, :10])
    np.testing.assert_allclose(sims, np.take_along_axis(full, idx, axis=1), rtol=1e-5)
    idx, _ = top_k(queries, refs[:4], 10)
    assert idx.shape == (37, 4)


def write_references(path, dim=4):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    table = pa.table(
        {
            "pert_id": ["a", "b", "c", "a", "b", "c"],
            "pert_iname": ["A", "B", "C", "A", "B", "C"],
            "pert_type": ["trt_cp", "trt_cp", "trt_sh"] * 2,
            "cell_id": [None, None, None, "X", "X", "X"],
            "embedding": vector_array(x),
        }
    )
    pq.write_table(
        table.replace_schema_metadata(
            {b"l1000.model_version": b"m1", b"l1000.embedding_dim": str(dim).encode()}
        ),
        path,
    )
    return x


def test_references_by_scope_and_type_with_annotations(tmp_path):
    x = write_references(tmp_path / "perts.parquet")
    pq.write_table(
        pa.table(
            {
                "pert_id": ["a", "b", "c"],
                "moa": ["HDAC inhibitor", "-666", None],
                "target": ["HDAC1", "", "TP53"],
            }
        ),
        tmp_path / "pt.parquet",
    )
    ann = read_annotations([tmp_path / "pt.parquet"])
    refs = load_references(tmp_path / "perts.parquet", ann)
    assert list(refs.pert_id) == ["a", "b", "c"] and refs.model_version == "m1"
    assert list(refs.moa) == ["HDAC inhibitor", None, None]
    assert list(refs.target) == ["HDAC1", None, "TP53"]
    np.testing.assert_allclose(refs.vectors, x[:3], atol=1e-6)
    cell = load_references(tmp_path / "perts.parquet", ann, cell="X", pert_type="trt_cp")
    assert list(cell.pert_id) == ["a", "b"]
    with pytest.raises(L1000InputError, match="no perturbagen embeddings for cell line 'Y'"):
        load_references(tmp_path / "perts.parquet", ann, cell="Y")

    query = QueryProfiles(tmp_path / "q.csv", ["q1", "q2"], np.zeros((2, N_LANDMARKS)), 978, [], 0)
    hits = rank(query, x[[1, 2]].astype(np.float32), refs, k=2)
    second = hits["pert_id"]
    assert hits[["query_id", "rank", "pert_id"]].values.tolist() == [
        ["q1", 1, "b"],
        ["q1", 2, second[1]],
        ["q2", 1, "c"],
        ["q2", 2, second[3]],
    ]
    assert hits["similarity"][0] == pytest.approx(1.0, abs=1e-6)


def test_embeddings_that_are_not_unit_length_are_refused(tmp_path):
    z = np.eye(4, dtype=np.float32)[:3].copy()
    check_unit_length(tmp_path / "q.csv", z, ["a", "b", "c"])
    z[1], z[2] = 0.0, np.nan  # what a degenerate profile embeds to
    with pytest.raises(
        L1000InputError,
        match=r"q\.csv: 2 profile\(s\) embed to a vector that is not unit.*'b', 'c'",
    ):
        check_unit_length(tmp_path / "q.csv", z, ["a", "b", "c"])


def test_scan_remembers_files_by_size_and_mtime(tmp_path):
    folder = tmp_path / "queries"
    folder.mkdir()
    now = time.time()
    for name in ("a.csv", "b.gct", "notes.md", ".hidden.csv"):
        (folder / name).write_text("x")
        os.utime(folder / name, (now - 60, now - 60))
    changed, unsupported, seen = scan_queries(folder, {}, now=now)
    assert [p.name for p in changed] == ["a.csv", "b.gct"]
    assert [p.name for p in unsupported] == ["notes.md"]
    # Nothing changed: nothing to do (a bad file is not tried again every tick).
    assert scan_queries(folder, seen, now=now)[:2] == ([], [])
    # A change of content (size, mtime) makes the file new again; a removed file drops out.
    (folder / "a.csv").write_text("xy")
    os.utime(folder / "a.csv", (now - 30, now - 30))
    (folder / "b.gct").unlink()
    changed, _, seen2 = scan_queries(folder, seen, now=now)
    assert [p.name for p in changed] == ["a.csv"]
    assert not any(k.endswith("b.gct") for k in seen2)
    # A file still being written waits for the next scan.
    (folder / "c.tsv").write_text("x")
    changed, _, seen3 = scan_queries(folder, seen2, now=time.time())
    assert changed == [] and not any(k.endswith("c.tsv") for k in seen3)
    assert [p.name for p in scan_queries(folder, seen3, now=time.time() + 10)[0]] == ["c.tsv"]
    assert scan_queries(tmp_path / "nowhere", {}) == ([], [], {})


def test_results_are_merged_per_query_file(tmp_path):
    x = write_references(tmp_path / "perts.parquet")
    refs = load_references(tmp_path / "perts.parquet", read_annotations([]))
    files = {}
    for name in ("one.csv", "two.csv"):
        files[name] = tmp_path / name
        files[name].write_text("x")

    def result(name, n):
        q = QueryProfiles(
            files[name],
            [f"{name}-{i}" for i in range(n)],
            np.zeros((n, N_LANDMARKS)),
            978,
            ["1000"],
            0,
        )
        z = x[:n].astype(np.float32)
        return ReadAcrossResult(q, z, rank(q, z, refs, 2))

    out, queries = tmp_path / "r" / "results.parquet", tmp_path / "r" / "queries.parquet"
    assert write_results(
        out,
        queries,
        [result("one.csv", 2), result("two.csv", 1)],
        replaced=files.values(),
        version="m1",
        dim=4,
    ) == (6, 3)
    # one.csv again with one profile: its old rows go, two.csv's stay.
    assert write_results(
        out, queries, [result("one.csv", 1)], replaced=[files["one.csv"]], version="m1", dim=4
    ) == (4, 2)
    table = pq.read_table(queries)
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), 4)
    assert sorted(table.column("query_id").to_pylist()) == ["one.csv-0", "two.csv-0"]
    assert table.column("missing_genes").to_pylist() == [["1000"], ["1000"]]
    # A failed file loses its old results; a deleted file's results go on the next write.
    files["two.csv"].unlink()
    assert write_results(out, queries, [], replaced=[files["one.csv"]], version="m1", dim=4) == (
        0,
        0,
    )


def test_queries_are_placed_on_a_fixed_map():
    from l1000_assets.core.readacross.map import layout, place_queries

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    xy = layout(x, "tsne", seed=0)
    assert np.allclose(layout(x, "tsne", seed=0), xy)  # seeded: the same map every time
    queries = x[[3, 17]] + 0.01 * rng.normal(size=(2, 8)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    qxy = place_queries(x, xy, queries, k=1)
    assert np.allclose(qxy, xy[[3, 17]], atol=1e-4)  # on its nearest perturbagen
    placed = place_queries(x, xy, queries)
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    assert ((placed >= lo) & (placed <= hi)).all()  # inside the map, which did not move
    assert place_queries(x, xy, np.zeros((0, 8), np.float32)).shape == (0, 2)
