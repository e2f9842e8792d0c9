"""The small formatters every table shares (a leaf: it imports nothing of
conceptlib): :func:`markdown_table`, :func:`plus_minus` (``mean ± sd``) and
:func:`at`, the path getter into a recorded metrics dict."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any


def markdown_table(
    header: Sequence[str], rows: Iterable[Sequence[Any]], align: str | None = None
) -> str:
    """A Markdown table, cells as ``str()``; ``align``: ``l`` or ``r`` per column
    (default: the first left, the others right, as for a label then numbers)."""
    align = align or "l" + "r" * (len(header) - 1)
    if len(align) != len(header):
        raise ValueError(f"align {align!r} does not match {len(header)} columns")
    lines = ["| " + " | ".join(header) + " |"]
    lines.append("|" + "".join("---:|" if a == "r" else "---|" for a in align))
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def plus_minus(mean: float, sd: float | None = None, digits: int = 3) -> str:
    """``mean ± sd`` with ``digits`` decimals; the mean alone where ``sd`` is None."""
    text = f"{mean:.{digits}f}"
    return text if sd is None else f"{text} ± {sd:.{digits}f}"


def at(tree: Any, path: str | Sequence[str], default: Any = None) -> Any:
    """The value at ``path`` (keys, or one dotted string) in nested dicts;
    ``default`` where a key is missing or a node is not a dict."""
    for key in path.split(".") if isinstance(path, str) else path:
        if not isinstance(tree, dict) or key not in tree:
            return default
        tree = tree[key]
    return tree
