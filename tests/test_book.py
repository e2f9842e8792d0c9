"""The book's structure: table of contents, chapter conventions and glue keys.

Static checks only (nothing is executed): every ``_toc.yml`` entry exists; chapters
define no functions or classes; each chapter has a ``(ch-...)=`` label, a Summary and
a "Deviations from the paper" section; every ``{glue:...}`` key used in a chapter's
prose is glued in that chapter. See STYLE.md, "How a chapter looks".
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
CHAPTERS = sorted(BOOK.glob("*.ipynb"))

DEF_OR_CLASS = re.compile(r"^\s*(async\s+def|def|class)\s+\w", re.MULTILINE)
LABEL = re.compile(r"^\(ch-[\w-]+\)=\s*$", re.MULTILINE)
# roles such as {glue:text}`key:.3f` or {glue}`key`, and the {glue:figure} directive
GLUE_ROLE = re.compile(r"\{glue(?::\w+)?\}`([^`]+)`")
GLUE_DIRECTIVE = re.compile(r"^\s*[`:]{3,}\{glue(?::\w+)?\}\s+(\S+)", re.MULTILINE)
GLUE_CALL = re.compile(r"""\bglue\(\s*["']([^"']+)["']""")


def toc_files(node: object) -> list[str]:
    """Every ``file`` (and the ``root``) named anywhere in the parsed ``_toc.yml``."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("file", "root") and isinstance(value, str):
                found.append(value)
            else:
                found.extend(toc_files(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(toc_files(item))
    return found


def cells(path: Path, kind: str) -> list[dict]:
    """The cells of one type (``code`` or ``markdown``) of a notebook."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    return [c for c in nb["cells"] if c["cell_type"] == kind]


def source(cell: dict) -> str:
    src = cell["source"]
    return src if isinstance(src, str) else "".join(src)


def prose(path: Path) -> str:
    return "\n".join(source(c) for c in cells(path, "markdown"))


def glue_keys_used(text: str) -> set[str]:
    """Keys pasted in prose; a role's ``key:format`` loses its format spec."""
    keys = {m.rsplit(":", 1)[0] if ":" in m else m for m in GLUE_ROLE.findall(text)}
    return keys | set(GLUE_DIRECTIVE.findall(text))


def glue_keys_defined(path: Path) -> set[str]:
    """Keys glued by the notebook: literal ``glue("key", ...)`` calls in its code, and
    the names recorded in its stored outputs (which covers keys built in a loop)."""
    keys: set[str] = set()
    for cell in cells(path, "code"):
        keys |= set(GLUE_CALL.findall(source(cell)))
        for out in cell.get("outputs", []):
            name = out.get("metadata", {}).get("scrapbook", {}).get("name")
            if name:
                keys.add(name)
    return keys


def test_toc_is_a_book_with_existing_files() -> None:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    assert toc["format"] == "jb-book"
    files = toc_files(toc)
    assert files[0] == "book/intro"
    missing = [
        f
        for f in files
        if not any((ROOT / f"{f}{s}").is_file() for s in ("", ".md", ".ipynb"))
    ]
    assert not missing, f"_toc.yml names files that do not exist: {missing}"


def test_every_chapter_is_in_the_toc() -> None:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    listed = {Path(f).with_suffix("").as_posix() for f in toc_files(toc)}
    unlisted = [p.name for p in CHAPTERS if f"book/{p.stem}" not in listed]
    assert not unlisted, f"chapters missing from _toc.yml: {unlisted}"


def test_config_builds_only_toc_files_and_fails_on_errors() -> None:
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert cfg["only_build_toc_files"] is True
    assert cfg["execute"]["execute_notebooks"] == "force"
    assert cfg["execute"]["allow_errors"] is False
    assert cfg["sphinx"]["config"]["nitpicky"] is True
    for bib in cfg["bibtex_bibfiles"]:
        assert (ROOT / bib).is_file(), bib


def test_there_are_chapters() -> None:
    assert len(CHAPTERS) >= 5


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_chapter_defines_no_functions_or_classes(path: Path) -> None:
    bad = [
        source(c).splitlines()[0]
        for c in cells(path, "code")
        if DEF_OR_CLASS.search(source(c))
    ]
    assert not bad, f"{path.name}: def/class in code cells (move to conceptlib): {bad}"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_chapter_has_label_title_summary_and_deviations(path: Path) -> None:
    md = cells(path, "markdown")
    assert md, f"{path.name}: no markdown cells"
    first = source(md[0])
    assert LABEL.search(first), f"{path.name}: first markdown cell has no (ch-...)="
    assert re.search(r"^# \S", first, re.MULTILINE), f"{path.name}: no '# Title'"
    text = prose(path)
    assert re.search(r"^## Summary\s*$", text, re.MULTILINE), f"{path.name}: no Summary"
    assert re.search(r"^## Deviations from the paper\s*$", text, re.MULTILINE), (
        f"{path.name}: no 'Deviations from the paper' section"
    )


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_every_glue_key_in_prose_is_glued(path: Path) -> None:
    used = glue_keys_used(prose(path))
    missing = sorted(used - glue_keys_defined(path))
    assert not missing, f"{path.name}: keys used in prose but never glued: {missing}"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_chapter_checks_some_outputs_with_nbval(path: Path) -> None:
    checked = [
        c
        for c in cells(path, "code")
        if source(c).lstrip().startswith("# NBVAL_CHECK_OUTPUT")
    ]
    assert len(checked) >= 2, f"{path.name}: fewer than 2 NBVAL_CHECK_OUTPUT cells"
    empty = [source(c).splitlines()[1] for c in checked if not c.get("outputs")]
    assert not empty, f"{path.name}: checked cells without stored outputs: {empty}"


def test_glue_key_parsing() -> None:
    text = "a {glue:text}`n:,` b {glue}`x` c\n```{glue:figure} fig_a\n:name: f\n```"
    assert glue_keys_used(text) == {"n", "x", "fig_a"}


#: Chapters read as prose with a few short cells: longer logic belongs in conceptlib.
MAX_CELL_LINES = 15


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_no_chapter_cell_is_long(path: Path) -> None:
    long = [
        f"{source(c).splitlines()[0][:50]}... ({len(source(c).splitlines())} lines)"
        for c in cells(path, "code")
        if len(source(c).splitlines()) > MAX_CELL_LINES
    ]
    assert not long, f"{path.name}: cells over {MAX_CELL_LINES} lines: {long}"


#: Characters of code that a cell shows at 1280 px without scrolling sideways
#: (the book theme's code font and column width).
MAX_CODE_COLUMNS = 76


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_no_code_line_runs_past_its_cell(path: Path) -> None:
    wide = [
        line
        for c in cells(path, "code")
        for line in source(c).splitlines()
        if len(line) > MAX_CODE_COLUMNS
    ]
    assert not wide, f"{path.name}: lines over {MAX_CODE_COLUMNS} characters: {wide}"


def test_a_chapter_runs_in_a_kernel_from_an_empty_run_cache(tmp_path: Path) -> None:
    """Chapter 3 as a researcher opens it: a fresh Jupyter kernel, no run cache;
    it trains every variant (smoke profile) and runs to the end without errors."""
    import os

    import nbformat
    from nbclient import NotebookClient

    (tmp_path / "book").mkdir()
    (tmp_path / "results").symlink_to(ROOT / "results")
    nb = nbformat.read(BOOK / "03_training.ipynb", as_version=4)
    env = {"CONCEPTLIB_PROFILE": "smoke", "CONCEPTLIB_BUILD": "1"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits this process's environment
    try:
        NotebookClient(
            nb, timeout=600, kernel_name="python3",
            resources={"metadata": {"path": str(tmp_path / "book")}},
        ).execute()  # fmt: skip
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    runs = sorted(
        p.name.split("-")[0] for p in (tmp_path / "runs").iterdir() if p.is_dir()
    )
    assert runs == sorted(["augmented", "baseline", "concept", "concept_paper"])
    errors = [
        o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"
    ]
    assert not errors
