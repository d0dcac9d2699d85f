"""Gene-set query files and their genes: parsing, the gene space, CMap's sorting, refusals.

The gene tables are the real GEO one (../shared) and the synthetic release's: the code
uses whatever identifiers the table has."""

import numpy as np
import pandas as pd
import pytest

from l1000_assets.core.connectivity.gene_sets import (
    GeneSetOptions,
    RawQuery,
    is_gene_set_file,
    query_from_grp,
    read_gene_set_files,
    read_gene_table,
    read_gmt,
    read_grp,
    resolve_query,
    write_gmt,
    write_grp,
)
from l1000_assets.core.connectivity.genes import GeneSpace
from l1000_assets.core.connectivity.signatures import space_genes
from l1000_assets.core.errors import L1000InputError
from l1000_assets.core.formats.info_tables import read_info_table
from l1000_assets.core.releases.schema import canonical_genes


@pytest.fixture(scope="module")
def real_space(real_dir):
    genes = canonical_genes(read_info_table(real_dir / "gene_info_n12328.txt"))
    space = space_genes(genes, "bing")
    return GeneSpace.from_tables(genes, space["gene_id"].tolist()), genes, space


@pytest.fixture(scope="module")
def synthetic_space(small_meta):
    _, release = small_meta
    space = space_genes(release.genes, "bing")
    return GeneSpace.from_tables(release.genes, space["gene_id"].tolist()), release.genes, space


def symbols(genes: pd.DataFrame, mask, n: int, start: int = 0) -> list[str]:
    return genes.loc[mask, "symbol"].astype(str).tolist()[start : start + n]


# ----------------------------------------------------------------------------- files
def test_grp_pairs_gmt_and_tables(tmp_path):
    write_grp(tmp_path / "stress_up.grp", ["# a comment", "TP53", "", "MDM2"])
    write_grp(tmp_path / "stress_dn.grp", ["EGFR"])
    write_grp(tmp_path / "alone.grp", ["AKT1"])
    write_gmt(tmp_path / "sets.gmt", [("q1", ["A", "B"], ["C"]), ("q2", ["D"], [])])
    (tmp_path / "sets.gmt").write_text(
        (tmp_path / "sets.gmt").read_text() + "only_down_dn\tdesc\tE\tF\nplain\t\tG\n"
    )
    (tmp_path / "table.csv").write_text(
        "Gene,Direction,query\nTP53,up,x\nMDM2,+,x\nEGFR,down,x\nAKT1,-1,y\n"
    )
    assert read_grp(tmp_path / "stress_up.grp") == ("TP53", "MDM2")
    parsed = dict((p.name, q) for p, q in read_gene_set_files(sorted(tmp_path.glob("*.grp"))))
    assert set(parsed) == {"alone.grp", "stress_up.grp"}  # the pair is one query
    (pair,) = parsed["stress_up.grp"]
    assert (pair.name, pair.up, pair.down) == ("stress", ("TP53", "MDM2"), ("EGFR",))
    (alone,) = parsed["alone.grp"]
    assert alone.up == ("AKT1",) and alone.down is None
    gmt = {q.name: q for q in read_gmt(tmp_path / "sets.gmt")}
    assert gmt["q1"].up == ("A", "B") and gmt["q1"].down == ("C",)
    assert gmt["q2"].down is None and gmt["only_down"].up is None
    assert gmt["only_down"].down == ("E", "F") and gmt["plain"].up == ("G",)
    table = {q.name: q for q in read_gene_table(tmp_path / "table.csv")}
    assert table["x"].up == ("TP53", "MDM2") and table["x"].down == ("EGFR",)
    assert table["y"].up is None and table["y"].down == ("AKT1",)
    one = query_from_grp(tmp_path / "stress_up.grp", None)
    assert one.name == "stress" and one.down is None


def test_which_tables_are_gene_sets(tmp_path):
    (tmp_path / "sets.tsv").write_text("symbol\tsign\nTP53\tup\n")
    (tmp_path / "profiles.csv").write_text("gene,profile_1,profile_2\nTP53,1.5,-0.2\n")
    (tmp_path / "transposed.csv").write_text("id,TP53,MDM2\np1,0.1,0.2\n")
    (tmp_path / "binary.txt").write_bytes(b"\xff\xfe\x00garbage")
    (tmp_path / "x.gmt").write_text("a\t\tTP53\n")
    assert is_gene_set_file(tmp_path / "sets.tsv")
    assert is_gene_set_file(tmp_path / "x.gmt")
    assert not is_gene_set_file(tmp_path / "profiles.csv")  # gene column, no direction
    assert not is_gene_set_file(tmp_path / "transposed.csv")
    assert not is_gene_set_file(tmp_path / "binary.txt")


@pytest.mark.parametrize(
    "text, match",
    [
        ("q_up\tdesc\n", r"line 1: set 'q_up' has no genes"),
        ("q_up\t\tA\nq_up\t\tB\n", "line 2: a second up set"),
        ("\n# only a comment\n", "no gene sets"),
    ],
)
def test_bad_gmt_files(tmp_path, text, match):
    path = tmp_path / "bad.gmt"
    path.write_text(text)
    with pytest.raises(L1000InputError, match=match) as info:
        read_gmt(path)
    assert str(path) in str(info.value)


def test_bad_tables_and_grp(tmp_path):
    (tmp_path / "t.csv").write_text("gene,direction\nTP53,sideways\nMDM2,up\n")
    with pytest.raises(L1000InputError, match=r"'sideways' \(line 2\)"):
        read_gene_table(tmp_path / "t.csv")
    (tmp_path / "e.csv").write_text("gene,direction\n")
    with pytest.raises(L1000InputError, match="no genes in the table"):
        read_gene_table(tmp_path / "e.csv")
    (tmp_path / "empty.grp").write_text("# nothing\n\n")
    with pytest.raises(L1000InputError, match="no genes in the GRP file"):
        read_grp(tmp_path / "empty.grp")
    (tmp_path / "bin.grp").write_bytes(b"A\x00B")
    with pytest.raises(L1000InputError, match="binary"):
        read_grp(tmp_path / "bin.grp")


# ----------------------------------------------------------------------------- genes
@pytest.mark.parametrize("which", ["real_space", "synthetic_space"])
def test_sorting_into_valid_outside_and_invalid(which, request):
    space, genes, bing = request.getfixturevalue(which)
    in_space = genes["gene_id"].isin(bing["gene_id"])
    inside = symbols(genes, in_space, 12)
    outside = symbols(genes, ~in_space, 2)
    entrez = genes.loc[in_space, "gene_id"].iloc[20]
    labels = [
        inside[0].lower(),  # any case
        *inside[1:],
        f"{entrez}.0",  # an Entrez id as a spreadsheet writes it
        *outside,
        "NOT_A_GENE",
        inside[1],  # repeated
    ]
    sorted_genes = space.sort(labels)
    assert sorted_genes.valid == (inside[0].lower(), *inside[1:], entrez)
    assert sorted_genes.outside == tuple(outside)
    assert sorted_genes.invalid == ("NOT_A_GENE",)
    assert sorted_genes.repeated == (inside[1],)
    rows = np.asarray(sorted_genes.rows)
    assert bing["gene_id"].to_numpy()[rows].tolist() == list(sorted_genes.gene_ids)


def test_aliases_where_the_table_has_them():
    genes = pd.DataFrame(
        {
            "gene_id": ["1", "2", "3"],
            "symbol": ["NEW1", "TWO", "THREE"],
            "prev_symbols": ["OLD1|ALIAS_X", "ALIAS_X", "TWO"],  # TWO is a current symbol
            "aliases": [None, "OTHER2", None],
        }
    )
    space = GeneSpace.from_tables(genes, ["1", "2", "3"])
    assert space.resolve("old1") == "1"
    assert space.resolve("OTHER2") == "2"
    assert space.resolve("TWO") == "2"  # the current symbol wins over gene 3's old one
    result = space.sort(["ALIAS_X"])
    assert result.invalid == ("ALIAS_X",) and "several genes (1, 2)" in result.notes[0]


def raw(tmp_path, up, down, name="q"):
    return RawQuery(name, (tmp_path / "query.gmt",), up, down)


def test_refusals_name_the_file_query_and_genes(tmp_path, synthetic_space):
    space, genes, bing = synthetic_space
    in_space = genes["gene_id"].isin(bing["gene_id"])
    ok = symbols(genes, in_space, 30)
    cases = [
        (raw(tmp_path, (), ()), "no genes"),
        (raw(tmp_path, None, ()), "no genes"),
        (raw(tmp_path, (), tuple(ok[:10])), "the up set is empty"),
        (
            raw(tmp_path, ("NOPE1", "NOPE2"), None),
            r"none of the 2 gene\(s\) of the up set.*'NOPE1'",
        ),
        (
            raw(tmp_path, tuple(ok[:12]), (*ok[11:22], ok[0].lower())),
            rf"2 gene\(s\) in both the up and the down set: '{ok[0]} \(",
        ),
        (
            raw(tmp_path, (*ok[:5], "NOPE"), None),
            r"the up set has 5 valid gene\(s\).*fewer than the 10.*invalid: 'NOPE'",
        ),
    ]
    for query, match in cases:
        with pytest.raises(L1000InputError, match=match) as info:
            resolve_query(query, space)
        assert str(info.value).startswith(str(tmp_path / "query.gmt"))
        assert "query 'q'" in str(info.value)
    with pytest.raises(L1000InputError, match="more than the 20 allowed"):
        resolve_query(raw(tmp_path, tuple(ok), None), space, GeneSetOptions(max_genes=20))


def test_a_good_query(tmp_path, synthetic_space):
    space, genes, bing = synthetic_space
    in_space = genes["gene_id"].isin(bing["gene_id"])
    ok = symbols(genes, in_space, 40)
    outside = symbols(genes, ~in_space, 1)
    q = resolve_query(raw(tmp_path, (*ok[:20], *outside, "NOPE"), tuple(ok[20:40])), space)
    report = q.genes_report()
    assert len(report["up_valid"]) == 20 and report["up_outside"] == outside
    assert report["up_invalid"] == ["NOPE"] and len(report["down_valid"]) == 20
    assert len(q.up_rows) == 20 and len(q.down_rows) == 20
    only_down = resolve_query(raw(tmp_path, None, tuple(ok[:15])), space)
    assert len(only_down.up_rows) == 0 and only_down.up is None
