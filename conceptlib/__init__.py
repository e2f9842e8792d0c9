"""conceptlib: visual concepts and operators in a fully convolutional VAE.

A reproduction of "Towards Learning a Vocabulary of Visual Concepts and Operators
using Deep Neural Networks" (BMVC 2021 submission 1424).
"""

from conceptlib.errors import ConceptlibError

__version__ = "0.1.0"
__all__ = ["ConceptlibError", "__version__", "concept_maps", "load_concept_model"]

#: The public read-out (:mod:`conceptlib.model.readout`), imported on first use so that
#: ``import conceptlib`` stays light (the command line checks its input before
#: torch is imported).
_LAZY = {"concept_maps", "load_concept_model"}


def __getattr__(name: str):
    if name in _LAZY:
        from conceptlib.model import readout

        return getattr(readout, name)
    raise AttributeError(f"module 'conceptlib' has no attribute {name!r}")
