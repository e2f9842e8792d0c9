"""Which digits a measure or a choice reads: training, validation or test.

A run's MNIST training digits are split 70/30 (``data.val_fraction``, stratified);
nothing trains on the 30 % *validation* digits, and every choice (recipe, weight,
operator setting, threshold) is made on them or on the training digits. The test
digits are read once, for the reported numbers: a function that chooses calls
:func:`refuse_test` with its data's split. See chapter ``ch-vocabulary``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from conceptlib.errors import ConceptlibError

#: The splits of held-out digits a measure can name.
HELD_SPLITS = ("val", "test")
#: The splits a choice may be made on.
CHOICE_SPLITS = ("train", "val")


@dataclass(frozen=True)
class HeldDigits:
    """Digits ``x`` (uint8), labels ``y``, each digit's variant (``fit_variants``)
    and the ``split`` they come from (``train``, ``val`` or ``test``)."""

    x: np.ndarray
    y: np.ndarray
    variants: np.ndarray
    split: str

    def __len__(self) -> int:
        return len(self.y)

    def take(self, idx: np.ndarray) -> HeldDigits:
        """The digits at ``idx``, of the same split."""
        return HeldDigits(self.x[idx], self.y[idx], self.variants[idx], self.split)


def check_split(split: str, allowed: tuple[str, ...] = HELD_SPLITS) -> str:
    """``split`` if it is one of ``allowed``, else a one-line error."""
    if split not in allowed:
        expected = ", ".join(allowed)
        raise ConceptlibError(f"unknown split {split!r} (expected one of {expected})")
    return split


def refuse_test(split: str | None, who: str) -> str:
    """``split``, the split of the data ``who`` chooses on, if a choice may be made
    on it (``train`` or ``val``); a ConceptlibError for test data, an unknown
    split, or none."""
    if split is None:
        what = "say which split its data come from (train or val)"
        raise ConceptlibError(f"{who} chooses: {what}")
    if split == "test":
        raise ConceptlibError(
            f"{who} chooses, and refuses test data: choose on validation data "
            "(split 'val'); test digits are read once, for the reported numbers"
        )
    return check_split(split, CHOICE_SPLITS)


def split_of(data: object, split: str | None = None) -> str | None:
    """The split ``data`` names (a :class:`HeldDigits`), else ``split``."""
    named = getattr(data, "split", None)
    if named is not None and split is not None and named != split:
        raise ConceptlibError(f"data of split {named!r} passed as split {split!r}")
    return named if named is not None else split
