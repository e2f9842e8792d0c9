"""Operators: edit and compose images through the concept layer.

The algebra (:mod:`~conceptlib.operators.algebra`) is re-exported here, so that
``from conceptlib import operators as op`` gives ``op.read``, ``op.remove``, ...

- :mod:`~conceptlib.operators.algebra`: read, render, remove, add, shift, move,
  compose, and ``apply`` of parsed steps;
- :mod:`~conceptlib.operators.editing`: ``conceptlib edit`` (one image, a chain
  of steps);
- :mod:`~conceptlib.operators.evaluate`: operator measures against latent and
  pixel edits, read by an independent classifier;
- :mod:`~conceptlib.operators.limits`: why additions fail (read-out placements);
- :mod:`~conceptlib.operators.explorer`: the interactive explorer (ipywidgets).
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

__all__ = [
    "DILATE",
    "Step",
    "add",
    "apply",
    "blank",
    "compose",
    "move",
    "prototypes",
    "read",
    "region",
    "remove",
    "render",
    "shift",
]
