"""Operators: edit and compose images through the concept layer.

The algebra (:mod:`~conceptlib.operators.algebra`: read, render, remove, add, shift,
move, compose, ``apply`` of steps) is re-exported here: ``from conceptlib import
operators as op`` gives ``op.read``, ``op.remove``, ... The other modules:
:mod:`~conceptlib.operators.evaluate` (the operator measures),
:mod:`~conceptlib.operators.latent` (the latent baseline),
:mod:`~conceptlib.operators.meaning` (edits that change the digit, read by a
classifier), :mod:`~conceptlib.operators.limits` (why additions fail) and
:mod:`~conceptlib.operators.explorer` (the interactive explorer).
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
