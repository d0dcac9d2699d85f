"""What the UI shows beside every asset, attached once to the loaded definitions: owners,
links to the source code (in git when the checkout has a remote, else the local file), and
``dagster/table_name`` for the assets the DuckDB catalog serves as a table or view."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Sequence
from pathlib import Path

import dagster as dg

from l1000_assets.lib.keys import (
    EVALUATION_METRICS,
    LANDMARK_PROFILES,
    PERTURBAGEN_EMBEDDINGS,
    PROFILE_EMBEDDINGS,
    READ_ACROSS_RESULTS,
    RELEASE_METADATA,
    SIGNATURE_EMBEDDINGS,
    ZSCORE_SIGNATURES,
)

OWNERS = ["team:l1000-assets"]
GIT_URL_ENV = "L1000_GIT_URL"
GIT_BRANCH_ENV = "L1000_GIT_BRANCH"
PACKAGE_DIR = Path(__file__).resolve().parents[1]
REPO_DIR = PACKAGE_DIR.parent

CATALOG_DATABASE = "l1000"  # catalog/l1000.duckdb
CATALOG_TABLES = {
    LANDMARK_PROFILES: "profiles",
    RELEASE_METADATA: "instances",
    PROFILE_EMBEDDINGS: "profile_embeddings",
    SIGNATURE_EMBEDDINGS: "signature_embeddings",
    PERTURBAGEN_EMBEDDINGS: "perturbagen_embeddings",
    ZSCORE_SIGNATURES: "zscore_signatures",
    READ_ACROSS_RESULTS: "read_across_results",
    EVALUATION_METRICS: "evaluation_metrics",
}
"""The catalog's table or view of each asset (``dagster/table_name``: database.schema.table)."""


def _git(*args: str) -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO_DIR), *args], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def web_url(remote: str) -> str:
    """A browsable https URL of a git remote (``git@host:o/r.git`` -> ``https://host/o/r``);
    empty for a local path."""
    remote = remote.strip()
    if m := re.match(r"^[\w.-]+@([\w.-]+):(.+?)(\.git)?/?$", remote):
        return f"https://{m.group(1)}/{m.group(2)}"
    if m := re.match(r"^(?:https?|ssh|git)://(?:[^@/]+@)?([^/]+)/(.+?)(\.git)?/?$", remote):
        return f"https://{m.group(1)}/{m.group(2)}"
    return ""


def git_location() -> tuple[str, str] | None:
    """(web URL, branch) of the source in git: ``$L1000_GIT_URL`` / ``$L1000_GIT_BRANCH``, else
    the checkout's ``origin`` remote and branch; None when there is neither (the code
    references then stay links to the local files). Reads only the local git config."""
    url = os.environ.get(GIT_URL_ENV, "").strip() or web_url(_git("remote", "get-url", "origin"))
    if not url:
        return None
    branch = os.environ.get(GIT_BRANCH_ENV, "").strip() or _git("rev-parse", "--abbrev-ref", "HEAD")
    return url.rstrip("/"), branch if branch and branch != "HEAD" else "main"


def with_code_references(assets: Sequence) -> Sequence:
    """Each asset linked to the file and line of its definition, in git when it can be."""
    assets = dg.with_source_code_references(list(assets))
    location = git_location()
    if location is None:
        return assets
    url, branch = location
    return dg.link_code_references_to_git(
        assets,
        git_url=url,
        git_branch=branch,
        file_path_mapping=dg.AnchorBasedFilePathMapping(
            local_file_anchor=PACKAGE_DIR, file_anchor_path_in_repository=PACKAGE_DIR.name
        ),
    )


def describe(spec: dg.AssetSpec) -> dg.AssetSpec:
    """Owners, and the catalog table of the assets the catalog serves."""
    metadata = dict(spec.metadata)
    if spec.key in CATALOG_TABLES:
        metadata["dagster/table_name"] = f"{CATALOG_DATABASE}.main.{CATALOG_TABLES[spec.key]}"
    return spec.replace_attributes(owners=list(spec.owners) or OWNERS, metadata=metadata)
