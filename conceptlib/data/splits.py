"""Which digits a measure or a choice reads: training, validation or test.

The MNIST training digits of a run are split 70/30 (``data.val_fraction``,
stratified, :attr:`~conceptlib.experiment.pipeline.Pipeline.digit_split`). No variant
trains
on the 30 %: not as digits, and not through concept images, representative
images or digit variants, which are all cut from or fitted on the 70 % only.
Those 30 % are the *validation* digits: every choice (recipe, weight, operator
setting, threshold) is made on them or on the training digits. The MNIST test
digits are read once, for the numbers the book reports.

A function that chooses says so by calling :func:`refuse_test` with the split of
the data it was handed; handed test data, it stops with a one-line error.

See: chapter ``ch-vocabulary``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from conceptlib.errors import ConceptlibError

__all__ = [
    "CHOICE_SPLITS",
    "HELD_SPLITS",
    "HeldDigits",
    "check_split",
    "refuse_test",
    "split_of",
]

#: The splits of held-out digits a measure can name.
HELD_SPLITS = ("val", "test")
#: The splits a choice may be made on.
CHOICE_SPLITS = ("train", "val")


@dataclass(frozen=True)
class HeldDigits:
    """Digits of one split, with the split's name.

    Attributes:
        x: ``(N, 28, 28)`` uint8 digits; y: ``(N,)`` int64 labels.
        variants: ``(N,)`` each digit's variant (see ``fit_variants``).
        split: ``train``, ``val`` or ``test``.
    """

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
        raise ConceptlibError(
            f"unknown split {split!r} (expected one of {', '.join(allowed)})"
        )
    return split


def refuse_test(split: str | None, who: str) -> str:
    """The split a chooser was handed, if a choice may be made on it.

    Args:
        split: the split of the data ``who`` chooses on (``train`` or ``val``).
        who: the chooser, for the message.

    Raises:
        ConceptlibError: on ``test`` data (read once, for the reported numbers),
            on an unknown split, or when the split is not said.
    """
    if split is None:
        raise ConceptlibError(
            f"{who} chooses: say which split its data come from (train or val)"
        )
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
