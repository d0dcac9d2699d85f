"""The canonical schema: drift in optional columns is reported, and a wrong landmark count
names the genes."""

import shutil

import pandas as pd
import pytest

from l1000_assets.core.errors import L1000InputError
from l1000_assets.core.formats.info_tables import read_info_table
from l1000_assets.core.releases.local import open_release
from l1000_assets.core.releases.schema import canonical_genes


def _copy(small_release, tmp_path):
    root = tmp_path / "release"
    shutil.copytree(small_release.root, root)
    return root, root / small_release.inst_info.name


def test_a_renamed_or_empty_optional_column_is_reported(small_release, tmp_path):
    root, inst_path = _copy(small_release, tmp_path)
    assert open_release("drift", root).schema_warnings == []
    inst = pd.read_csv(inst_path, sep="\t", dtype=str)
    inst = inst.rename(columns={"pert_dose": "dose"})
    inst["pert_time"] = "-666"
    inst.to_csv(inst_path, sep="\t", index=False)
    release = open_release("drift", root)
    assert release.instances["pert_dose"].isna().all()
    absent, empty = release.schema_warnings
    assert absent.startswith(str(inst_path)) and "pert_dose" in absent and "'dose'" in absent
    assert "columns found" in absent and "'pert_dose_unit'" in absent
    assert "pert_time (as 'pert_time')" in empty and "every row" in empty
    assert "pert_dose (" not in empty


@pytest.fixture
def gene_info(real_dir) -> pd.DataFrame:
    return read_info_table(real_dir / "gene_info_n12328.txt")


def _landmarks(genes: pd.DataFrame) -> list[str]:
    return genes.loc[genes["pr_is_lm"] == "1", "pr_gene_id"].tolist()


def test_too_few_landmarks_names_the_missing_ones_against_a_reference(gene_info):
    reference = _landmarks(gene_info)
    dropped = reference[:5]
    changed = gene_info.copy()
    changed.loc[changed["pr_gene_id"].isin(dropped), "pr_is_lm"] = "0"
    symbol = dict(zip(gene_info["pr_gene_id"], gene_info["pr_gene_symbol"]))
    with pytest.raises(L1000InputError, match="973 landmark genes marked, expected 978") as caught:
        canonical_genes(
            changed, path="gene_info.txt", reference_landmarks=reference, reference="release X"
        )
    message = str(caught.value)
    assert "release X" in message
    for gene in dropped[:3]:
        assert f"'{gene}' ({symbol[gene]})" in message
    # Too many: the extra ones are named.
    extra = gene_info.loc[gene_info["pr_is_lm"] == "0", "pr_gene_id"].tolist()[:2]
    changed = gene_info.copy()
    changed.loc[changed["pr_gene_id"].isin(extra), "pr_is_lm"] = "1"
    with pytest.raises(L1000InputError, match="980 landmark genes marked") as caught:
        canonical_genes(changed, reference_landmarks=reference, reference="release X")
    assert all(f"'{gene}'" in str(caught.value) for gene in extra)


def test_too_few_landmarks_without_a_reference_names_the_unflagged_genes(gene_info):
    changed = gene_info.copy()
    unflagged = _landmarks(gene_info)[10:14]
    changed.loc[changed["pr_gene_id"].isin(unflagged), "pr_is_lm"] = pd.NA  # -666 in the file
    with pytest.raises(L1000InputError, match="974 landmark genes marked") as caught:
        canonical_genes(changed)
    message = str(caught.value)
    assert "no landmark flag" in message
    assert all(f"'{gene}'" in message for gene in unflagged)
