"""Atom and bond features of the spec's section 1, as small integer codes.

A molecule is stored as one integer code per atom field and per bond field (a few bytes per
atom), never as one-hot vectors; :func:`atom_one_hot` and :func:`bond_one_hot` expand codes into
the 39- and 11-wide inputs on the fly, on whole batches at once.

Atom fields (39 one-hot dims in this order):
    element 23 (22 listed elements + "other"), degree 6, formal charge 5, chiral tag 4, aromatic 1.
Bond fields (11 dims):
    bond type 4 (single, double, triple, aromatic), in ring 1, stereo 6.
A directed edge's input is its source atom's 39 dims followed by its bond's 11 (50 dims).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import chain
from typing import TYPE_CHECKING

import numpy as np
from rdkit import Chem

if TYPE_CHECKING:  # torch is imported where tensors are made, so data steps start fast
    import torch

#: Bump whenever a code below changes meaning: caches written by another version are refused.
FEATURIZER_VERSION = 1

ELEMENTS = ("C", "N", "O", "S", "F", "Si", "P", "Cl", "Br", "Mg", "Na", "Ca", "Fe", "Al", "I", "B",
            "K", "Se", "Zn", "H", "Cu", "Mn")
#: Formal charges in slot order; any other charge goes to the slot of 0 (the last one).
CHARGES = (-1, -2, 1, 2, 0)

ATOM_FIELDS = ("element", "degree", "charge", "chiral", "aromatic")
#: Number of one-hot slots per atom field (aromatic is a single bit, so one slot).
ATOM_FIELD_SIZES = (len(ELEMENTS) + 1, 6, len(CHARGES), 4, 1)
ATOM_DIM = sum(ATOM_FIELD_SIZES)  # 39

BOND_FIELDS = ("bond_type", "in_ring", "stereo")
#: Bond type codes 0..3 are single, double, triple, aromatic; code 4 is "any other type"
#: (dative, zero-order, ...) whose one-hot has no bit set and which no loss term targets.
BOND_TYPES = (Chem.BondType.SINGLE, Chem.BondType.DOUBLE, Chem.BondType.TRIPLE, Chem.BondType.AROMATIC)
BOND_TYPE_OTHER = len(BOND_TYPES)
BOND_FIELD_SIZES = (len(BOND_TYPES), 1, 6)
BOND_DIM = sum(BOND_FIELD_SIZES)  # 11
EDGE_DIM = ATOM_DIM + BOND_DIM  # 50

#: Offsets of each field's first slot inside the one-hot vectors (useful to slice logits).
ATOM_FIELD_OFFSETS = tuple(int(x) for x in np.cumsum((0,) + ATOM_FIELD_SIZES[:-1]))
BOND_FIELD_OFFSETS = tuple(int(x) for x in np.cumsum((0,) + BOND_FIELD_SIZES[:-1]))

_ELEMENT_CODE = np.full(256, len(ELEMENTS), dtype=np.uint8)
for _i, _symbol in enumerate(ELEMENTS):
    _ELEMENT_CODE[Chem.GetPeriodicTable().GetAtomicNumber(_symbol)] = _i
# charges -128..127 shifted by +128; default slot is the one of charge 0
_CHARGE_CODE = np.full(256, CHARGES.index(0), dtype=np.uint8)
for _i, _charge in enumerate(CHARGES):
    _CHARGE_CODE[_charge + 128] = _i
_BOND_TYPE_CODE = {bond_type: i for i, bond_type in enumerate(BOND_TYPES)}


@dataclass(frozen=True)
class MolCodes:
    """One molecule's graph as integer codes.

    Attributes:
        atoms: ``(n_atoms, 5)`` uint8, columns in :data:`ATOM_FIELDS` order.
        bond_atoms: ``(n_bonds, 2)`` int64, begin and end atom of each (undirected) bond.
        bonds: ``(n_bonds, 3)`` uint8, columns in :data:`BOND_FIELDS` order.
    """

    atoms: np.ndarray
    bond_atoms: np.ndarray
    bonds: np.ndarray


def raw_atom_fields(mol: Chem.Mol) -> Iterator[int]:
    """RDKit's raw atom values, 5 per atom: atomic number, degree, charge, chiral tag, aromatic.

    Atoms are fetched by index (``GetAtoms()`` goes through a slow Python sequence wrapper), and
    the values stream into one flat list per chunk: Python wrappers of RDKit atoms are the cost.
    """
    return chain.from_iterable(
        (a.GetAtomicNum(), a.GetDegree(), a.GetFormalCharge(), a.GetChiralTag(), a.GetIsAromatic())
        for a in map(mol.GetAtomWithIdx, range(mol.GetNumAtoms())))


def raw_bond_fields(mol: Chem.Mol) -> Iterator[int]:
    """RDKit's raw bond values, 5 per bond: begin, end, type code, in ring, stereo."""
    return chain.from_iterable(
        (b.GetBeginAtomIdx(), b.GetEndAtomIdx(), _BOND_TYPE_CODE.get(b.GetBondType(), BOND_TYPE_OTHER),
         b.IsInRing(), b.GetStereo())
        for b in map(mol.GetBondWithIdx, range(mol.GetNumBonds())))


def encode_atoms(raw: np.ndarray) -> np.ndarray:
    """``(N, 5)`` raw atom values (:func:`raw_atom_fields`) -> ``(N, 5)`` uint8 codes."""
    atoms = np.empty(raw.shape, dtype=np.uint8)
    atoms[:, 0] = _ELEMENT_CODE[np.clip(raw[:, 0], 0, 255)]
    atoms[:, 1] = np.minimum(raw[:, 1], ATOM_FIELD_SIZES[1] - 1)
    atoms[:, 2] = _CHARGE_CODE[np.clip(raw[:, 2] + 128, 0, 255)]
    atoms[:, 3] = np.minimum(raw[:, 3], ATOM_FIELD_SIZES[3] - 1)
    atoms[:, 4] = raw[:, 4]
    return atoms


def encode_bonds(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(M, 5)`` raw bond values -> ``(M, 2)`` int64 bond atoms and ``(M, 3)`` uint8 codes."""
    bonds = np.empty((len(raw), 3), dtype=np.uint8)
    bonds[:, 0] = raw[:, 2]
    bonds[:, 1] = raw[:, 3]
    bonds[:, 2] = np.minimum(raw[:, 4], BOND_FIELD_SIZES[2] - 1)
    return raw[:, :2].astype(np.int64), bonds


def mol_codes(mol: Chem.Mol) -> MolCodes:
    """Integer feature codes of a sanitized RDKit molecule (implicit hydrogens)."""
    n, m = mol.GetNumAtoms(), mol.GetNumBonds()
    raw_atoms = np.fromiter(raw_atom_fields(mol), dtype=np.int64, count=5 * n).reshape(n, 5)
    raw_bonds = np.fromiter(raw_bond_fields(mol), dtype=np.int64, count=5 * m).reshape(m, 5)
    bond_atoms, bonds = encode_bonds(raw_bonds)
    return MolCodes(atoms=encode_atoms(raw_atoms), bond_atoms=bond_atoms, bonds=bonds)


def atom_one_hot(codes: torch.Tensor) -> torch.Tensor:
    """Expand ``(N, 5)`` atom codes into the ``(N, 39)`` float one-hot input, for a whole batch."""
    import torch

    codes = codes.long()
    out = torch.zeros(codes.shape[0], ATOM_DIM, dtype=torch.float32, device=codes.device)
    rows = torch.arange(codes.shape[0], device=codes.device)
    for field in range(4):  # the four categorical fields; a loop over fields, not atoms
        out[rows, ATOM_FIELD_OFFSETS[field] + codes[:, field]] = 1.0
    out[:, ATOM_FIELD_OFFSETS[4]] = codes[:, 4].float()
    return out


def bond_one_hot(codes: torch.Tensor) -> torch.Tensor:
    """Expand ``(E, 3)`` bond codes into the ``(E, 11)`` float one-hot input.

    Bond type code 4 ("other") sets no bit, as in chemprop.
    """
    import torch

    codes = codes.long()
    out = torch.zeros(codes.shape[0], BOND_DIM + 1, dtype=torch.float32, device=codes.device)
    rows = torch.arange(codes.shape[0], device=codes.device)
    # bond type: slot 0..3, code 4 lands in a scratch column (index 11) that is dropped below
    type_slot = torch.where(codes[:, 0] < BOND_TYPE_OTHER, codes[:, 0], torch.full_like(codes[:, 0], BOND_DIM))
    out[rows, type_slot] = 1.0
    out[:, BOND_FIELD_OFFSETS[1]] = codes[:, 1].float()
    out[rows, BOND_FIELD_OFFSETS[2] + codes[:, 2]] = 1.0
    return out[:, :BOND_DIM]
