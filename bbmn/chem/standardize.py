"""SMILES -> sanitized, optionally standardized RDKit molecule, or a reason why not.

Two named profiles cover the two uses (spec section 10):

``as_given``
    RDKit parse + sanitize only; the molecule is the SMILES as written (salts and charges kept).
    Benchmark sets are read this way, so that scaffolds, and hence splits, are GROVER's.
``standard``
    For pre-training corpora and users' own data: keep the largest organic fragment
    (``LargestFragmentChooser(preferOrganic=True)``), normalize functional groups
    (``rdMolStandardize.Normalizer``, e.g. nitro groups), neutralize charges where RDKit's
    ``Uncharger`` can. Stereochemistry is kept in both profiles.

Either way the output SMILES is RDKit's canonical isomeric SMILES of the resulting molecule.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, replace

from rdkit import Chem, RDLogger
from rdkit.Chem.MolStandardize import rdMolStandardize

RDLogger.DisableLog("rdApp.*")  # reasons go to the rejects file, not to stderr noise

#: C0 and C1 control characters. No SMILES holds one, and RDKit reads ``"\x00C"`` as methane,
#: so a SMILES with one is refused before parsing, naming it, rather than read as something else.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_NAMES = {"\x00": "NUL", "\t": "TAB", "\n": "LF", "\x0b": "VT", "\x0c": "FF", "\r": "CR",
                  "\x1b": "ESC", "\x7f": "DEL"}
#: Padding around a SMILES that is not part of it (a CSV cell's spaces, a line's end).
_PADDING = " \t\r\n"


def control_character(smiles: str) -> str | None:
    """Why ``smiles`` is refused for a control character inside it (padding aside), or None.

    The message names the character, its 1-based position in ``smiles`` and the text escaped,
    so that a NUL shows where a terminal or a spreadsheet would hide it.
    """
    inner = smiles.strip(_PADDING)
    found = _CONTROL.search(inner)
    if found is None:
        return None
    char = found.group()
    position = len(smiles) - len(smiles.lstrip(_PADDING)) + found.start() + 1
    name = f"{_CONTROL_NAMES[char]}, " if char in _CONTROL_NAMES else ""
    return f"control character ({name}U+{ord(char):04X}) at character {position} of {smiles!r}"


@dataclass(frozen=True)
class StandardizeOptions:
    """What ``standardize`` does beyond parse + sanitize.

    Attributes:
        largest_fragment: keep only the largest organic fragment (drops counter-ions, solvents).
        normalize: apply RDKit's functional-group normalization transforms.
        neutralize: neutralize charges where possible (``Uncharger``).
        keep_stereo: keep stereochemistry in the output SMILES and molecule.
        max_heavy_atoms: reject molecules with more heavy atoms than this (0 = no limit).
    """

    largest_fragment: bool = True
    normalize: bool = True
    neutralize: bool = True
    keep_stereo: bool = True
    max_heavy_atoms: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


PROFILES = {
    "as_given": StandardizeOptions(largest_fragment=False, normalize=False, neutralize=False),
    "standard": StandardizeOptions(),
}


def profile(name: str, **overrides) -> StandardizeOptions:
    """A named profile, with some options overridden (``None`` values are ignored)."""
    if name not in PROFILES:
        raise ValueError(f"unknown standardization profile {name!r}; use one of {sorted(PROFILES)}")
    return replace(PROFILES[name], **{k: v for k, v in overrides.items() if v is not None})


@dataclass(frozen=True)
class Outcome:
    """Result for one SMILES: ``mol`` and ``smiles`` when kept, else ``reason`` and ``detail``."""

    mol: Chem.Mol | None = None
    smiles: str = ""
    reason: str = ""
    detail: str = ""


class Standardizer:
    """Applies :class:`StandardizeOptions` to SMILES strings.

    The RDKit standardization objects are built once per instance (they are not cheap to make).
    """

    REASONS = ("empty_smiles", "control_character", "invalid_smiles", "sanitize_failed",
               "standardize_failed", "no_atoms", "too_many_atoms")

    def __init__(self, options: StandardizeOptions = StandardizeOptions()):
        self.options = options
        self._chooser = rdMolStandardize.LargestFragmentChooser(preferOrganic=True)
        self._normalizer = rdMolStandardize.Normalizer()
        self._uncharger = rdMolStandardize.Uncharger()

    def __call__(self, smiles: str) -> Outcome:
        control = control_character(smiles)  # before str.strip, which drops some of them
        if control is not None:
            return Outcome(reason="control_character", detail=control)
        text = smiles.strip()
        if not text:
            return Outcome(reason="empty_smiles", detail="empty SMILES")
        if not text.isascii():
            return Outcome(reason="invalid_smiles", detail="SMILES contains non-ASCII characters")
        mol = Chem.MolFromSmiles(text)  # exactly what GROVER / chemprop do with a SMILES
        if mol is None:
            return self._why_not(text)
        try:
            mol = self._standardize(mol)
        except Exception as exc:
            return Outcome(reason="standardize_failed", detail=str(exc).strip()[:300])
        if mol.GetNumAtoms() == 0:
            return Outcome(reason="no_atoms", detail="no atoms left after standardization")
        limit = self.options.max_heavy_atoms
        if limit and mol.GetNumHeavyAtoms() > limit:
            return Outcome(reason="too_many_atoms",
                           detail=f"{mol.GetNumHeavyAtoms()} heavy atoms > max_heavy_atoms={limit}")
        smiles_out = Chem.MolToSmiles(mol, isomericSmiles=self.options.keep_stereo)
        return Outcome(mol=mol, smiles=smiles_out)

    @staticmethod
    def _why_not(text: str) -> Outcome:
        """Tell a syntax error from a chemistry (sanitization) error, with RDKit's message."""
        raw = Chem.MolFromSmiles(text, sanitize=False)
        if raw is None:
            return Outcome(reason="invalid_smiles", detail="RDKit cannot parse the SMILES")
        try:
            Chem.SanitizeMol(raw)
        except Exception as exc:  # RDKit raises several sanitization exception types
            return Outcome(reason="sanitize_failed", detail=str(exc).strip().splitlines()[0][:300])
        return Outcome(reason="sanitize_failed", detail="RDKit rejects the molecule")

    def _standardize(self, mol: Chem.Mol) -> Chem.Mol:
        opts = self.options
        if opts.largest_fragment and len(Chem.GetMolFrags(mol)) > 1:
            mol = self._chooser.choose(mol)
        if opts.normalize:
            mol = self._normalizer.normalize(mol)
        if opts.neutralize:
            mol = self._uncharger.uncharge(mol)
        if not opts.keep_stereo:
            Chem.RemoveStereochemistry(mol)
        if opts.largest_fragment or opts.normalize or opts.neutralize:
            Chem.SanitizeMol(mol)
        return mol
