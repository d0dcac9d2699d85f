"""Every SQL example of the README runs on a demo-like catalog and returns rows.

The examples are read from README.md (every ```sql block, split into statements by DuckDB),
so an example added there is tested here. The catalog is the small trained graph's
(tests/defs/conftest.py: the same synthetic release as the demo, smaller), copied, with the
demo's example query profile (my_extract.csv) ranked and the evaluation run, as `make demo`
does. With L1000_DEMO_ROOT set to a data root made by `make demo`, its catalog is checked
too (read-only).
"""

import os
import re
import shutil
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from l1000_assets.core.catalog.build import connect_read_only
from l1000_assets.lib.demo import _write_example_queries, write_example_query
from l1000_assets.lib.resources import LakeResource
from tests.conftest import REPO

README = REPO / "README.md"
FAST_EVALUATION = {"methods": ["embedding", "zscore_cosine"], "max_wtcs_queries": 150}
HOW_TO_PICK = (
    "the README's examples must name what the synthetic release holds; pick names with e.g. "
    "SELECT pert_iname, pert_id, cell_id FROM signature_embeddings WHERE pert_type = 'trt_cp' "
    "AND pert_dose = 10 AND pert_time = 24 ORDER BY pert_id, and check them on `make demo`'s "
    "catalog too (L1000_DEMO_ROOT=data pytest tests/defs/catalog/test_readme_sql.py)"
)


def sql_examples(text: str) -> list[tuple[int, str]]:
    """(line number, statement) of every statement in the ```sql blocks of ``text``."""
    examples = []
    for block in re.finditer(r"^```sql\n(.*?)^```", text, re.M | re.S):
        first_line = text[: block.start(1)].count("\n") + 1
        body = block.group(1)
        for statement in duckdb.extract_statements(body):
            query = statement.query.strip()
            code = "\n".join(
                line for line in query.splitlines() if not line.strip().startswith("--")
            ).strip()
            offset = body.find(code.splitlines()[0]) if code else 0
            examples.append((first_line + body[:offset].count("\n"), code))
    return [(line, code) for line, code in examples if code]


def test_the_examples_are_found():
    examples = sql_examples(README.read_text())
    assert len(examples) >= 15
    assert any("similar_perturbagens" in code for _, code in examples)
    assert all(not code.startswith("--") for _, code in examples)


@pytest.fixture(scope="module")
def demo_like_catalog(embedded, tmp_path_factory) -> Path:
    from tests.defs.model.test_model_assets import train_split

    graph, _ = embedded
    # The evaluation's examples need a held-out split's ranks: split_0's model (resumed when
    # another test trained it) beside the served all.
    assert train_split(graph, "split_0").success
    root = tmp_path_factory.mktemp("readme") / "data"
    shutil.copytree(graph.root, root, ignore=shutil.ignore_patterns("queries", "checkpoints"))
    write_example_query(root)
    lake = LakeResource(root=str(root))
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("split", ["split_0"])
    resources = {**graph.resources, "lake": lake}
    # Structures and the gene-set store first (the README's structure and gene-set
    # examples), as make demo builds them; then the demo's example gene-set queries.
    built = dg.materialize(
        graph.everything,
        selection=["compound_fingerprints", "connectivity_signatures", "connectivity_reference"],
        instance=instance,
        resources=resources,
        run_config={"ops": {"connectivity_reference": {"config": {"n_queries": 120}}}},
    )
    assert built.success
    _write_example_queries(root)
    ranks = dg.materialize(
        graph.everything,
        selection=["evaluation_ranks"],
        partition_key="split_0",
        instance=instance,
        resources=resources,
        run_config={"ops": {"evaluation_ranks": {"config": FAST_EVALUATION}}},
    )
    assert ranks.success
    result = dg.materialize(
        graph.everything,
        selection=[
            "evaluation_metrics",
            "read_across_results",
            "connectivity_results",
            "warehouse",
        ],
        instance=instance,
        resources=resources,
        run_config={"ops": {"evaluation_metrics": {"config": {"bootstrap": 50}}}},
    )
    assert result.success
    return lake.catalog_path


def catalogs() -> list[str]:
    return ["demo-like"] + (["demo"] if os.environ.get("L1000_DEMO_ROOT") else [])


@pytest.mark.parametrize("which", catalogs())
def test_every_readme_sql_example_returns_rows(which, request):
    if which == "demo":
        path = LakeResource(root=os.environ["L1000_DEMO_ROOT"]).catalog_path
    else:
        path = request.getfixturevalue("demo_like_catalog")
    failures = []
    with connect_read_only(path) as con:
        for line, code in sql_examples(README.read_text()):
            try:
                rows = con.execute(code).fetchall()
            except duckdb.Error as exc:
                failures.append(f"README.md:{line}: {exc}\n{code}")
                continue
            if not rows:
                failures.append(f"README.md:{line}: no rows\n{code}")
    assert not failures, f"{len(failures)} example(s) failed on {path} ({HOW_TO_PICK}):\n\n" + (
        "\n\n".join(failures)
    )
