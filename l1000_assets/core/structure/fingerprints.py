"""ECFP4 fingerprints: RDKit Morgan fingerprints of radius 2, folded to 2,048 bits.

A fingerprint is stored bit-packed, 256 bytes per compound (``numpy.packbits`` of RDKit's
bit vector, bit 0 first, big-endian within a byte), so a million compounds take 256 MB and
a Parquet ``fixed_size_binary(256)`` column holds them as they are. RDKit is imported when a
fingerprint is computed, not when this module is imported.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

RADIUS = 2
N_BITS = 2048
N_BYTES = N_BITS // 8
FINGERPRINT = f"ecfp4 (RDKit Morgan, radius {RADIUS}, {N_BITS} bits)"


@dataclass(frozen=True)
class Fingerprints:
    """Packed fingerprints of a list of molecules.

    ``packed`` is ``(n, 256)`` uint8 (all zero where the SMILES did not parse), ``valid``
    ``(n,)`` marks the molecules RDKit could read, ``n_on`` ``(n,)`` the bits set.
    """

    packed: NDArray[np.uint8]
    valid: NDArray[np.bool_]

    @property
    def n_on(self) -> NDArray[np.int32]:
        return bit_counts(self.packed)

    def __len__(self) -> int:
        return len(self.packed)


def bit_counts(packed: NDArray[np.uint8]) -> NDArray[np.int32]:
    """Set bits per row of a packed fingerprint matrix."""
    return np.bitwise_count(packed).sum(axis=1, dtype=np.int32)


def _generator():
    from rdkit import RDLogger
    from rdkit.Chem import rdFingerprintGenerator

    RDLogger.DisableLog("rdApp.*")  # unparsable SMILES are reported through ``valid``
    return rdFingerprintGenerator.GetMorganGenerator(radius=RADIUS, fpSize=N_BITS)


def ecfp4(smiles: Iterable[str | None]) -> Fingerprints:
    """ECFP4 fingerprints of ``smiles`` (None, empty or unparsable -> not ``valid``)."""
    from rdkit import Chem

    generator = _generator()
    smiles = list(smiles)
    packed = np.zeros((len(smiles), N_BYTES), np.uint8)
    valid = np.zeros(len(smiles), bool)
    for i, s in enumerate(smiles):
        if not isinstance(s, str) or not s.strip() or s.strip() == "-666":
            continue
        mol = Chem.MolFromSmiles(s)
        if mol is None:
            continue
        bits = generator.GetFingerprintAsNumPy(mol).astype(bool)
        packed[i] = np.packbits(bits)
        valid[i] = True
    return Fingerprints(packed, valid)
