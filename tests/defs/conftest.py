"""A Dagster graph run on a small synthetic release, shared by the tests of later stages."""

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import pytest

from l1000_assets.lib.demo import ASSET_PARTITION_RANGE_END, ASSET_PARTITION_RANGE_START


@dataclass
class Graph:
    root: Path
    instance: dg.DagsterInstance
    everything: list
    resources: dict
    cells: list[str] = field(default_factory=list)
    results: dict = field(default_factory=dict)  # stage -> ExecuteInProcessResult

    def run(self, names, partition=None, tags=None, config=None, **kwargs):
        return dg.materialize(
            self.everything,
            selection=names,
            instance=self.instance,
            resources=self.resources,
            partition_key=partition,
            tags=tags or {},
            run_config=config or {},
            **kwargs,
        )


def build_lake_graph(root: Path, n_profiles: int, seed: int) -> Graph:
    """Materialize synthetic_release -> release_files/metadata -> landmark_profiles."""
    from l1000_assets.definitions import defs
    from l1000_assets.lib.releases import ReleaseRegistry
    from l1000_assets.lib.resources import LakeResource

    definitions = defs()
    graph = Graph(
        root,
        dg.DagsterInstance.ephemeral(),
        [*definitions.assets, *definitions.asset_checks],
        {"lake": LakeResource(root=str(root)), "releases": ReleaseRegistry()},
    )
    graph.run(
        ["synthetic_release"],
        config={"ops": {"synthetic_release": {"config": {"n_profiles": n_profiles, "seed": seed}}}},
    )
    graph.results["meta"] = graph.run(["release_files", "release_metadata"], partition="synthetic")
    graph.cells = graph.instance.get_dynamic_partitions("cell_line")
    graph.results["lake"] = graph.run(
        ["landmark_profiles"],
        tags={
            ASSET_PARTITION_RANGE_START: graph.cells[0],
            ASSET_PARTITION_RANGE_END: graph.cells[-1],
        },
    )
    return graph


@pytest.fixture(scope="session")
def lake_graph(tmp_path_factory) -> Graph:
    return build_lake_graph(tmp_path_factory.mktemp("graph"), n_profiles=6_000, seed=3)


PCA_MAP = {"perturbagen_map": {"config": {"method": "pca"}}}


def settled(path: Path) -> Path:
    """``path`` as a file that stopped changing a minute ago (what the sensors wait for)."""
    past = time.time() - 60
    os.utime(path, (past, past))
    return path


@pytest.fixture(scope="module")
def own_queries_folder(lake_graph):
    """The query files a module drops into the shared lake's queries folder are removed
    after it, so that another module's sensor sees only its own files, in any test order
    (use as ``pytestmark = pytest.mark.usefixtures("own_queries_folder")``)."""
    queries = lake_graph.root / "queries"
    before = set(queries.iterdir()) if queries.is_dir() else set()
    yield
    for path in set(queries.iterdir()) - before if queries.is_dir() else ():
        path.unlink()


@pytest.fixture(scope="session")
def embedded(lake_graph):
    """The small lake with a trained model, its embeddings, read-across and the catalog
    (shared: tests that change it work on a copy of its data root)."""
    from tests.defs.model.test_model_assets import train_split

    graph = lake_graph
    assert train_split(graph, "all").success  # the served model (resumed when trained)
    cells = {
        ASSET_PARTITION_RANGE_START: graph.cells[0],
        ASSET_PARTITION_RANGE_END: graph.cells[-1],
    }
    results = {
        "profiles": graph.run(["profile_embeddings", "zscore_signatures"], tags=cells),
        "aggregates": graph.run(["signature_embeddings", "perturbagen_embeddings"]),
        "read_across": graph.run(
            ["read_across_results", "perturbagen_map"], config={"ops": PCA_MAP}
        ),
        "warehouse": graph.run(["warehouse"]),
    }
    return graph, results
