"""conceptlib: visual concepts and operators in a fully convolutional VAE.

A reproduction of "Towards Learning a Vocabulary of Visual Concepts and Operators
using Deep Neural Networks" (BMVC 2021 submission 1424).
"""

from conceptlib.errors import ConceptlibError

__version__ = "0.1.0"
__all__ = ["ConceptlibError", "__version__"]
