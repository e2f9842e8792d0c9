"""The one exception type the command line turns into a one-line error."""

from __future__ import annotations


class ConceptlibError(Exception):
    """A problem with user input (a file, a config, an option), stated in one line
    naming the input; the command line prints ``conceptlib: error: <message>``."""
