"""Bemis-Murcko scaffolds, as GROVER / chemprop compute them for scaffold splits."""

from __future__ import annotations

from collections.abc import Sequence

from rdkit import Chem, RDLogger
from rdkit.Chem.Scaffolds import MurckoScaffold

RDLogger.DisableLog("rdApp.*")


def murcko_scaffold(smiles: str, include_chirality: bool = False) -> str:
    """The Murcko scaffold SMILES of a molecule ('' for acyclic molecules).

    Raises:
        ValueError: if the SMILES does not parse.
    """
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise ValueError(f"SMILES does not parse: {smiles!r}")
    return MurckoScaffold.MurckoScaffoldSmiles(mol=mol, includeChirality=include_chirality)


def scaffold_groups(smiles: Sequence[str], include_chirality: bool = False) -> list[list[int]]:
    """Positions of ``smiles`` grouped by scaffold, groups in first-seen order, positions ascending."""
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(smiles):
        groups.setdefault(murcko_scaffold(s, include_chirality), []).append(i)
    return list(groups.values())
