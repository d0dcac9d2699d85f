"""Result tables in the format their file name says."""

import json

import pandas as pd
import pytest

from l1000_assets.core.output import table_format, write_table

HITS = pd.DataFrame(
    {
        "query_id": ["q1", "q1"],
        "rank": [1, 2],
        "similarity": [0.91, 0.5],
        "pert_iname": ["vorinostat", "µ-conotoxin"],
        "moa": ["HDAC inhibitor", None],
    }
)


@pytest.mark.parametrize(
    "name", ["hits.csv", "hits.tsv", "hits.parquet", "hits.json", "HITS.JSONL"]
)
def test_each_format_reads_back(tmp_path, name):
    path = write_table(HITS, tmp_path / name)
    kind = table_format(path)
    if kind == "csv":
        back = pd.read_csv(path)
    elif kind == "tsv":
        back = pd.read_csv(path, sep="\t")
        assert "\t" in path.read_text().splitlines()[0]
    elif kind == "parquet":
        back = pd.read_parquet(path)
        assert path.read_bytes()[:4] == b"PAR1"
    elif kind == "json":
        records = json.loads(path.read_text(encoding="utf-8"))
        assert records[0] == {
            "query_id": "q1",
            "rank": 1,
            "similarity": 0.91,
            "pert_iname": "vorinostat",
            "moa": "HDAC inhibitor",
        }
        back = pd.DataFrame(records)
    else:
        lines = path.read_text(encoding="utf-8").splitlines()
        assert len(lines) == 2 and json.loads(lines[1])["pert_iname"] == "µ-conotoxin"
        back = pd.DataFrame([json.loads(line) for line in lines])
    assert back["pert_iname"].tolist() == HITS["pert_iname"].tolist()
    assert back["rank"].tolist() == [1, 2]
    assert back["moa"].isna().tolist() == [False, True]
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary left


def test_an_unknown_extension_names_the_choices(tmp_path):
    with pytest.raises(
        ValueError, match=r"hits.xlsx: cannot tell the format from '.xlsx'.*\*.parquet"
    ):
        write_table(HITS, tmp_path / "hits.xlsx")
    with pytest.raises(ValueError, match="no extension"):
        table_format(tmp_path / "hits")
    assert not list(tmp_path.iterdir())
