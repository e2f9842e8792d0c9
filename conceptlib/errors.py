"""The one exception type the command line turns into a one-line error."""

from __future__ import annotations


class ConceptlibError(Exception):
    """A problem with user input (a file, a config, an option), stated in one line.

    The message names the input and what is wrong with it. The command line prints
    ``conceptlib: error: <message>`` on stderr and exits with status 2.
    """
