"""The small formatters every table of the project shares (a leaf module: it
imports nothing of conceptlib, so any module may use it).

- :func:`markdown_table`: the one table builder;
- :func:`plus_minus`: the one formatter of an estimate, ``mean ± sd``;
- :func:`at`: the one path getter into a recorded metrics dict.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any


def markdown_table(
    header: Sequence[str], rows: Iterable[Sequence[Any]], align: str | None = None
) -> str:
    """A Markdown table: one ``|``-separated line per row, cells as ``str()``.

    Args:
        header: the column names.
        rows: the cells of each row, one per column.
        align: ``l`` or ``r`` per column (default: the first column left, the
            others right, as for a label followed by numbers).
    """
    align = align or "l" + "r" * (len(header) - 1)
    if len(align) != len(header):
        raise ValueError(f"align {align!r} does not match {len(header)} columns")
    lines = ["| " + " | ".join(header) + " |"]
    lines.append("|" + "".join("---:|" if a == "r" else "---|" for a in align))
    for row in rows:
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    return "\n".join(lines)


def plus_minus(mean: float, sd: float | None = None, digits: int = 3) -> str:
    """``mean ± sd`` with ``digits`` decimals; the mean alone where ``sd`` is
    ``None`` (one seed, no spread to show)."""
    text = f"{mean:.{digits}f}"
    return text if sd is None else f"{text} ± {sd:.{digits}f}"


def at(tree: Any, path: str | Sequence[str], default: Any = None) -> Any:
    """The value at ``path`` (keys, or one dotted string) in nested dicts;
    ``default`` where a key is missing or a node is not a dict."""
    keys = path.split(".") if isinstance(path, str) else path
    node = tree
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            return default
        node = node[key]
    return node
