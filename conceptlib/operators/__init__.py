"""Operators: edit and compose images through the concept layer.

The algebra (:mod:`~conceptlib.operators.algebra`: read, render, remove, add, shift,
move, compose, ``apply`` of steps) is re-exported here (``op.read``, ``op.remove``,
...). The other modules: ``evaluate`` (the operator measures), ``latent`` (the
latent baseline), ``meaning`` (edits that change the digit, read by a classifier),
``limits`` (why additions fail) and ``explorer`` (the interactive explorer).
"""

from conceptlib.operators.algebra import (
    DILATE,
    Step,
    add,
    apply,
    blank,
    compose,
    move,
    prototypes,
    read,
    region,
    remove,
    render,
    shift,
)

__all__ = ["DILATE", "Step", "add", "apply", "blank", "compose", "move"]
__all__ += ["prototypes", "read", "region", "remove", "render", "shift"]
