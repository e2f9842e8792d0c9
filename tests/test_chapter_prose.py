"""Every number and comparison in the chapters' prose is computed, or quoted.

A sentence of the book that states a measured number or a comparison ("better",
"halves", "within the noise") must take it from recorded or computed data: through a
glue role (``{glue:text}`key```), whose value a code cell computed. This test reads
every Markdown cell of the chapters, removes what may hold digits (glue and other
roles, math, inline code, labels, directive options) and the phrases listed below,
and fails on any digit, percentage or comparative left.

What may stay, all in this one place:

- :data:`PAPER`: quotations of the paper (its figure, section and step numbers, the
  numbers it states) and the names of its claims;
- :data:`CITED`: numbers quoted from cited work, beside the citation;
- :data:`NAMES`: names that contain a digit but state no measurement (a digit class,
  "layer 3", "28 x 28", "bf16").
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from test_book import CHAPTERS, cells, source  # tests/ is on sys.path, as for helpers

#: Quotations of the paper and names of its claims (shared/paper, DESIGN.md).
PAPER = (
    r"\bFigures? \d( (and|to|against) \d)?\b",  # its figures
    r"\b[Ss]ections? \d(\.\d)?( (and|to) \d(\.\d)?)?('s)?",  # its sections
    r"\b[Ss]teps? \d( to \d)?\b",  # the steps of its section 3.5
    r"\b[Cc]laims? \d[ab]?(, \d[ab]?)*( and \d[ab]?)?\b",  # the scorecard's claim ids
    r"\b120\b|\b60\b(?! %)",  # its headline losses, "120 to 60"
    r"\b50 epochs\b",  # its training length
    r"\bsd 1 px\b|\b1 px\b",  # its box jitter
    r"\bp = 0\.8\b",  # its source probability
    r"\bfewer epochs\b",  # claim 5, in its words
    r"\bthe (validation )?loss halves\b",  # claim 1, in its words
)

#: Numbers quoted from cited work, each beside its citation.
CITED = (r"\babout 83-87 nats\b",)  # published VAE likelihoods, burda2016importance

#: Names that contain a digit but state no measurement.
NAMES = (
    r"\b(a|an|the|of|of a|of an|for|each|every|as a|to a|from a) \d('s)?\b"
    r"( (and|or) \d\b)?(?![.,]\d)(?! ?(%|px|pixels?|epochs?|seeds?|nats?|points?)\b)",
    # digit classes: "a 7", "of 3 and 5" (not "of 3 seeds", "each 2 px")
    r"\b(curly|flat|open|closed) \d\b",  # the forms of a digit class
    r"\b\d's\b",  # "a 4's diagonal"
    r"\b\ds\b",  # "the 2s and 4s"
    r"\b(layer|layers)[- ]\d\b|\blayer-\d\b",  # decoder layer 3, "layer-3 maps"
    r"\b\d+ ?x ?\d+( x \d+)?\b",  # image and latent shapes
    r"\bbf16\b|\bfp32\b|\bAVX512(-BF16)?\b|\bAVX2\b|\bSHA-256\b|\buint8\b",
    r"\b[Kk]-means\b|\b2-means\b",  # the method's name
    r"\btop[- ]\d\b(?![.,]\d)",  # the read-out's top-k, a rule glued where defined
    r"\b[Cc]lusterings? \d( (to|and) \d)?\b",  # section 4's four clusterings
    r"\bblack 0\b|\bwhite 1\b|\b0 \(black\) to 1\b",  # the grey scale's ends
    r"\[0, 1\]|\b0 or 1\b",  # pixel range
    r"\bMNIST\b",
)

CODE_BLOCK = re.compile(r"^\s*(```+)(?!\{)[^\n]*\n.*?^\s*\1\s*$", re.M | re.S)
LIST_MARK = re.compile(r"^\s*\d+\.\s", re.M)
ROLE = re.compile(r"\{[\w:-]+\}`[^`]*`")
MATH = re.compile(r"\$\$.*?\$\$|\$[^$\n]+\$", re.S)
CODE = re.compile(r"`[^`]+`")
LABEL = re.compile(r"^\([\w-]+\)=\s*$", re.M)
FENCE_OPEN = re.compile(r"^\s*(```+|:::+)\{[\w:-]+\}.*$", re.M)
OPTION = re.compile(r"^\s*:[\w-]+:.*$", re.M)
DIGIT_OR_PERCENT = re.compile(r"\d|%")
COMPARATIVE = re.compile(
    r"\b(better|worse|halve[sd]?|twice|(within|beyond) (the )?(seed )?noise"
    r"|more often|less often|far (more|less)|(higher|lower) than|only candidate)\b",
    re.I,
)
ALLOWED = re.compile(
    "|".join(f"(?:{p})" for p in PAPER + CITED + NAMES).replace(" ", r"\s+")
)


def unsourced(text: str) -> list[str]:
    """The lines of ``text`` that still hold a digit, a percentage or a comparative
    once roles, math, code, labels, directive lines and allowed phrases are gone."""
    for pattern in (CODE_BLOCK, FENCE_OPEN, ROLE, MATH, CODE, LABEL, OPTION):
        text = pattern.sub(" ", text)
    for pattern in (LIST_MARK, ALLOWED):
        text = pattern.sub(" ", text)
    return [
        line.strip()
        for line in text.splitlines()
        if DIGIT_OR_PERCENT.search(line) or COMPARATIVE.search(line)
    ]


def test_the_scanner_finds_typed_numbers_and_comparisons() -> None:
    assert unsourced("the KL halves") == ["the KL halves"]
    assert unsourced("the loss halves") == []  # claim 1, in the paper's words
    assert unsourced("it reaches 0.97 here") == ["it reaches 0.97 here"]
    assert unsourced("in 12 % of pairs") == ["in 12 % of pairs"]
    assert unsourced("a 7 without its top bar, Figure 3, section 3.5") == []
    assert unsourced("for 4 epochs") == ["for 4 epochs"]
    assert unsourced("each 2 px") == ["each 2 px"]
    assert unsourced("it reaches {glue:text}`acc:.3f`, $k = 3$, `--seeds 3`") == []
    assert unsourced("{glue:text}`verdict` is better") == ["is better"]


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_chapter_prose_states_no_typed_number_or_comparison(path: Path) -> None:
    found = [
        line for cell in cells(path, "markdown") for line in unsourced(source(cell))
    ]
    assert not found, (
        f"{path.name}: typed numbers or comparisons (glue them from data, or quote "
        f"the paper through tests/test_chapter_prose.py): {found}"
    )
