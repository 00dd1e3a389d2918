"""Ragged arrays of many molecules' codes, and their conversion to a torch_geometric ``Batch``.

:class:`GraphArrays` is what a cache slice decodes into: flat per-atom and per-bond code arrays
plus offsets, so that selecting, concatenating and batching molecules are numpy/torch index
operations with no Python loop per molecule or per atom.

The batch contract (what every model in bbmn reads):

==============  ==========  ==================================================================
attribute       shape       meaning
==============  ==========  ==================================================================
``x``           (N, 39)     atom one-hot input (float32)
``atom_codes``  (N, 5)      atom codes (long), fields as in ``bbmn.chem.features.ATOM_FIELDS``
``edge_index``  (2, E)      directed edges, row 0 source, row 1 target; bond ``i`` of the batch
                            gives edge ``2i`` (begin -> end) and edge ``2i + 1`` (end -> begin)
``rev_edge``    (E,)        index of each edge's reverse edge (``e ^ 1``)
``edge_attr``   (E, 11)     bond one-hot of each directed edge (float32)
``bond_codes``  (E, 3)      bond codes of each directed edge (long)
``batch``       (N,)        molecule of each atom
``ptr``         (B + 1,)    atom offsets of the molecules
``edge_ptr``    (B + 1,)    directed-edge offsets of the molecules
``y``           (B, T)      labels, NaN where missing (T = 0 for unlabelled corpora)
``row``         (B,)        the molecule's 0-based data row in the source file
==============  ==========  ==================================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from rdkit import Chem

from bbmn.chem.features import (MolCodes, atom_one_hot, bond_one_hot, encode_atoms, encode_bonds,
                                 raw_atom_fields, raw_bond_fields)

if TYPE_CHECKING:  # torch and torch_geometric load in seconds: only when a batch is made
    from torch_geometric.data import Batch


def _ragged_positions(ptr: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat positions of the items of the selected groups, and the selected groups' new offsets."""
    starts = ptr[idx]
    counts = ptr[idx + 1] - starts
    new_ptr = np.zeros(len(idx) + 1, dtype=np.int64)
    np.cumsum(counts, out=new_ptr[1:])
    positions = np.repeat(starts - new_ptr[:-1], counts) + np.arange(new_ptr[-1], dtype=np.int64)
    return positions, new_ptr


@dataclass
class GraphArrays:
    """Codes of ``B`` molecules, stored flat with offsets.

    Attributes:
        atom_ptr: ``(B + 1,)`` int64 offsets into ``atoms``.
        atoms: ``(N, 5)`` uint8 atom codes.
        bond_ptr: ``(B + 1,)`` int64 offsets into ``bond_atoms`` and ``bonds``.
        bond_atoms: ``(M, 2)`` int64 begin/end atom of each bond, local to its molecule.
        bonds: ``(M, 3)`` uint8 bond codes.
        row: ``(B,)`` int64 source data row of each molecule.
        y: ``(B, T)`` float32 labels with NaN for missing; ``T`` may be 0.
    """

    atom_ptr: np.ndarray
    atoms: np.ndarray
    bond_ptr: np.ndarray
    bond_atoms: np.ndarray
    bonds: np.ndarray
    row: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.row)

    @property
    def num_atoms(self) -> np.ndarray:
        return np.diff(self.atom_ptr)

    @property
    def num_bonds(self) -> np.ndarray:
        return np.diff(self.bond_ptr)

    @classmethod
    def from_codes(cls, codes: Sequence[MolCodes], rows: Sequence[int] | None = None,
                   y: np.ndarray | None = None) -> GraphArrays:
        """Pack per-molecule codes (as the featurizer makes them) into flat arrays."""
        n = len(codes)
        atom_ptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum([len(c.atoms) for c in codes], out=atom_ptr[1:])
        bond_ptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum([len(c.bonds) for c in codes], out=bond_ptr[1:])
        return cls(
            atom_ptr=atom_ptr,
            atoms=np.concatenate([c.atoms for c in codes]) if n else np.zeros((0, 5), np.uint8),
            bond_ptr=bond_ptr,
            bond_atoms=(np.concatenate([c.bond_atoms for c in codes]) if n
                        else np.zeros((0, 2), np.int64)),
            bonds=np.concatenate([c.bonds for c in codes]) if n else np.zeros((0, 3), np.uint8),
            row=np.arange(n, dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64),
            y=np.zeros((n, 0), np.float32) if y is None else np.asarray(y, dtype=np.float32).reshape(n, -1),
        )

    def take(self, idx: np.ndarray | Sequence[int]) -> GraphArrays:
        """The molecules at positions ``idx`` (in that order), without a loop per molecule."""
        idx = np.asarray(idx, dtype=np.int64)
        atom_pos, atom_ptr = _ragged_positions(self.atom_ptr, idx)
        bond_pos, bond_ptr = _ragged_positions(self.bond_ptr, idx)
        return GraphArrays(atom_ptr=atom_ptr, atoms=self.atoms[atom_pos], bond_ptr=bond_ptr,
                           bond_atoms=self.bond_atoms[bond_pos], bonds=self.bonds[bond_pos],
                           row=self.row[idx], y=self.y[idx])

    @staticmethod
    def concat(parts: Sequence[GraphArrays]) -> GraphArrays:
        """Join several arrays of molecules end to end."""
        if len(parts) == 1:
            return parts[0]

        def join_ptr(ptrs: list[np.ndarray]) -> np.ndarray:
            shifts = np.cumsum([0] + [p[-1] for p in ptrs[:-1]])
            return np.concatenate([ptrs[0][:1]] + [p[1:] + s for p, s in zip(ptrs, shifts)])

        return GraphArrays(
            atom_ptr=join_ptr([p.atom_ptr for p in parts]),
            atoms=np.concatenate([p.atoms for p in parts]),
            bond_ptr=join_ptr([p.bond_ptr for p in parts]),
            bond_atoms=np.concatenate([p.bond_atoms for p in parts]),
            bonds=np.concatenate([p.bonds for p in parts]),
            row=np.concatenate([p.row for p in parts]),
            y=np.concatenate([p.y for p in parts]),
        )

    def to_batch(self) -> Batch:
        """A torch_geometric ``Batch`` following the module's batch contract."""
        import torch
        from torch_geometric.data import Batch

        n_mol = len(self)
        atom_ptr = torch.from_numpy(self.atom_ptr)
        n_atoms = torch.from_numpy(self.num_atoms)
        n_bonds = torch.from_numpy(self.num_bonds)
        atom_codes = torch.from_numpy(self.atoms.astype(np.int64))
        mol_of_atom = torch.repeat_interleave(torch.arange(n_mol), n_atoms)
        bond_atoms = torch.from_numpy(self.bond_atoms) + torch.repeat_interleave(atom_ptr[:-1], n_bonds)[:, None]
        src = bond_atoms.reshape(-1)  # begin0, end0, begin1, end1, ...
        dst = bond_atoms.flip(1).reshape(-1)  # end0, begin0, end1, begin1, ...
        bond_codes = torch.from_numpy(self.bonds.astype(np.int64)).repeat_interleave(2, dim=0)
        num_edges = src.shape[0]
        batch = Batch(
            x=atom_one_hot(atom_codes),
            atom_codes=atom_codes,
            edge_index=torch.stack([src, dst]),
            rev_edge=torch.arange(num_edges) ^ 1,
            edge_attr=bond_one_hot(bond_codes),
            bond_codes=bond_codes,
            batch=mol_of_atom,
            ptr=atom_ptr.clone(),
            edge_ptr=torch.from_numpy(self.bond_ptr * 2),
            y=torch.from_numpy(np.ascontiguousarray(self.y, dtype=np.float32)),
            row=torch.from_numpy(self.row.copy()),
        )
        batch._num_graphs = n_mol
        return batch


def arrays_from_mols(mols: Sequence[Chem.Mol], rows: Sequence[int] | None = None,
                     y: np.ndarray | None = None) -> GraphArrays:
    """Codes of many RDKit molecules at once: one flat value list per chunk, encoded by numpy."""
    atom_values: list[int] = []
    bond_values: list[int] = []
    n_atoms = np.empty(len(mols), dtype=np.int64)
    n_bonds = np.empty(len(mols), dtype=np.int64)
    for i, mol in enumerate(mols):
        n_atoms[i] = mol.GetNumAtoms()
        n_bonds[i] = mol.GetNumBonds()
        atom_values.extend(raw_atom_fields(mol))
        bond_values.extend(raw_bond_fields(mol))
    bond_atoms, bonds = encode_bonds(np.array(bond_values, dtype=np.int64).reshape(-1, 5))
    atom_ptr = np.zeros(len(mols) + 1, dtype=np.int64)
    np.cumsum(n_atoms, out=atom_ptr[1:])
    bond_ptr = np.zeros(len(mols) + 1, dtype=np.int64)
    np.cumsum(n_bonds, out=bond_ptr[1:])
    n = len(mols)
    return GraphArrays(
        atom_ptr=atom_ptr, atoms=encode_atoms(np.array(atom_values, dtype=np.int64).reshape(-1, 5)),
        bond_ptr=bond_ptr, bond_atoms=bond_atoms, bonds=bonds,
        row=np.arange(n, dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64),
        y=np.zeros((n, 0), np.float32) if y is None else np.asarray(y, dtype=np.float32).reshape(n, -1))


def featurize_smiles(smiles: Sequence[str]) -> GraphArrays:
    """Direct featurization of SMILES (no cache), for tests, prediction and small inputs.

    Raises:
        ValueError: if a SMILES does not parse; clean input with ``bbmn clean`` first.
    """
    mols = []
    for i, s in enumerate(smiles):
        mol = Chem.MolFromSmiles(s)
        if mol is None:
            raise ValueError(f"SMILES {i} does not parse: {s!r}")
        mols.append(mol)
    return arrays_from_mols(mols)
