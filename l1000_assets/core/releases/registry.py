"""Known LINCS releases: where each comes from and what its files are called.

Three public releases are registered with their real file names and URLs (GEO GSE92742,
GEO GSE70138, CMap LINCS 2020 "beta"); any other release is a local directory of files a
user already has (the synthetic release among them).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

#: Release names become Dagster partition keys and directory names.
RELEASE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class ReleaseSource:
    """Where a release comes from and what its files are called.

    ``files`` maps a role (``level4``, ``inst_info``, ``gene_info``, ``pert_info``,
    ``cell_info``, ``checksums``) to the file name at ``base_url`` (HTTP sources) or in
    ``path`` (local sources; roles left out are discovered by name).
    """

    name: str
    kind: str  # "http" or "local"
    description: str = ""
    base_url: str | None = None
    path: str | None = None
    files: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not RELEASE_NAME.match(self.name):
            raise ValueError(f"invalid release name {self.name!r}: letters, digits, '_', '.', '-'")
        if self.kind not in ("http", "local"):
            raise ValueError(f"release {self.name}: kind must be 'http' or 'local'")

    def url(self, role: str) -> str:
        return f"{self.base_url.rstrip('/')}/{self.files[role]}"


GEO = "https://ftp.ncbi.nlm.nih.gov/geo/series"
KNOWN_RELEASES: dict[str, ReleaseSource] = {
    "GSE92742": ReleaseSource(
        name="GSE92742",
        kind="http",
        description="GEO GSE92742, LINCS Phase I (Broad), 1,319,138 level-4 profiles",
        base_url=f"{GEO}/GSE92nnn/GSE92742/suppl",
        files={
            "level4": "GSE92742_Broad_LINCS_Level4_ZSPCINF_mlr12k_n1319138x12328.gctx.gz",
            "inst_info": "GSE92742_Broad_LINCS_inst_info.txt.gz",
            "gene_info": "GSE92742_Broad_LINCS_gene_info.txt.gz",
            "pert_info": "GSE92742_Broad_LINCS_pert_info.txt.gz",
            "cell_info": "GSE92742_Broad_LINCS_cell_info.txt.gz",
            "checksums": "GSE92742_SHA512SUMS.txt.gz",
        },
    ),
    "GSE70138": ReleaseSource(
        name="GSE70138",
        kind="http",
        description="GEO GSE70138, LINCS Phase II (Broad), 345,976 level-4 profiles",
        base_url=f"{GEO}/GSE70nnn/GSE70138/suppl",
        files={
            "level4": "GSE70138_Broad_LINCS_Level4_ZSPCINF_mlr12k_n345976x12328_2017-03-06.gctx.gz",
            "inst_info": "GSE70138_Broad_LINCS_inst_info_2017-03-06.txt.gz",
            "gene_info": "GSE70138_Broad_LINCS_gene_info_2017-03-06.txt.gz",
            "pert_info": "GSE70138_Broad_LINCS_pert_info_2017-03-06.txt.gz",
            "cell_info": "GSE70138_Broad_LINCS_cell_info_2017-04-28.txt.gz",
        },
    ),
    "LINCS2020": ReleaseSource(
        name="LINCS2020",
        kind="http",
        description="CMap LINCS 2020 (beta), compound level-4 profiles",
        base_url="https://s3.amazonaws.com/macchiato.clue.io/builds/LINCS2020",
        files={
            "level4": "level4_beta_trt_cp_n1805898x12328.gctx",
            "inst_info": "instinfo_beta.txt",
            "gene_info": "geneinfo_beta.txt",
            "pert_info": "compoundinfo_beta.txt",
            "cell_info": "cellinfo_beta.txt",
        },
    ),
}

#: Date stamps in GEO file names (``..._2017-03-06.txt.gz``): a version signal.
DATED_NAME = re.compile(r"_(\d{4}-\d{2}-\d{2})\.")
