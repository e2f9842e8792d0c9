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

from conceptlib.config import VARIANTS

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


@pytest.mark.slow  # nbval runs this chapter in a fresh kernel too (`make test`)
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
    assert runs == sorted(VARIANTS)
    errors = [
        o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"
    ]
    assert not errors


def _is_glue_record(output: dict) -> bool:
    """An output that ``glue(..., display=False)`` stores: no reader ever sees it."""
    data = output.get("data", {})
    return output.get("output_type") == "display_data" and all(
        k.startswith("application/papermill.record") for k in data
    )


#: Tags that fold or remove a cell's code.
FOLDED = {"hide-input", "remove-input", "remove-cell", "hide-cell"}


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_cells_that_show_nothing_are_folded(path: Path) -> None:
    """A cell whose stored outputs a reader does not see (it imports, sets up or
    glues) has its code folded, so that prose, figures and tables carry the page."""
    shown = [
        source(c).splitlines()[0][:50]
        for c in cells(path, "code")
        if all(_is_glue_record(o) for o in c.get("outputs", []))
        and not FOLDED & set(c.get("metadata", {}).get("tags", []))
    ]
    assert not shown, f"{path.name}: cells to tag hide-input: {shown}"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_a_glued_figure_is_not_also_displayed(path: Path) -> None:
    """A cell that glues a figure shows it only through its ``{glue:figure}``: it
    closes the figure, or matplotlib's inline backend displays it a second time."""
    twice = [
        source(c).splitlines()[0][:50]
        for c in cells(path, "code")
        if any(
            _is_glue_record(o) and "application/papermill.record/image/png" in o["data"]
            for o in c.get("outputs", [])
        )
        and any(
            "image/png" in o.get("data", {}) and not _is_glue_record(o)
            for o in c.get("outputs", [])
        )
    ]
    assert not twice, f"{path.name}: cells that glue a figure and display it: {twice}"


def _browser_check():
    """``scripts/check_book_pages.py`` as a module (it loads Selenium only to run)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "check_book_pages", ROOT / "scripts" / "check_book_pages.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _png(pixels, **save) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", **save)
    return buf.getvalue()


def test_browser_check_finds_a_figure_shown_twice() -> None:
    import base64

    import numpy as np

    check = _browser_check()
    fig = np.zeros((100, 120, 3), np.uint8)
    fig[20:40, 30:90] = 255
    other = fig.copy()
    other[60:70] = 128
    # one figure in two encodings (the glued copy and the displayed one)
    a, b = _png(fig, compress_level=1), _png(fig, compress_level=9)
    assert a != b and check.image_key(a) == check.image_key(b)
    uri = "data:image/png;base64," + base64.b64encode(b).decode()
    assert check.data_uri_bytes(uri) == b
    assert check.data_uri_bytes("_images/x.png") is None
    icon = _png(np.zeros((16, 16, 3), np.uint8))
    images = [
        {"key": check.image_key(a), "width": 120, "height": 100, "where": "Fig. 7.1"},
        {"key": check.image_key(b), "width": 120, "height": 100, "where": "cell 9"},
        {"key": check.image_key(_png(other)), "width": 120, "height": 100,
         "where": "Fig. 7.2"},
        {"key": check.image_key(icon), "width": 16, "height": 16, "where": "logo"},
        {"key": check.image_key(icon), "width": 16, "height": 16, "where": "logo"},
    ]  # fmt: skip
    found = check.duplicate_figures(images)
    assert found == ["the same figure is shown 2 times: Fig. 7.1; cell 9"]
    assert check.duplicate_figures(images[:1] + images[2:]) == []


def test_browser_check_finds_content_cut_off() -> None:
    check = _browser_check()

    def box(id_, parent=-1, overflow="visible", scroll=600, client=600, left=300,
            right=900, scrolls=False, drawn=False, where="table"):  # fmt: skip
        return {
            "id": id_, "parent": parent, "where": where, "overflow_x": overflow,
            "scroll_width": scroll, "client_width": client, "left": left,
            "right": right, "in_scroll_container": scrolls,
            "scrollbar_drawn": drawn,
        }  # fmt: skip

    column = (300, 1000)
    # a table that fits, and a wide one that scrolls inside its container
    assert check.cut_off([box(0), box(1, right=1400, scrolls=True)], *column) == []
    scroller = box(0, overflow="auto", scroll=900, drawn=True)
    assert check.cut_off([scroller], *column) == []
    # a container that scrolls behind the browser's own scrollbar (not drawn on
    # macOS, phones and screenshots): a wide table looks cut at the right edge
    hidden_bar = box(0, overflow="auto", scroll=900, where="div.tables")
    assert check.cut_off([hidden_bar], *column) == [
        "content cut off inside div.tables: 300 px to the right behind the "
        "browser's own scrollbar, which macOS, phones and screenshots do not draw "
        "(style it, see _static/conceptlib.css)"
    ]
    # a container that hides what is wider than it
    cut = check.cut_off(
        [box(0, overflow="hidden", scroll=900, where="div.out")], *column
    )
    assert cut == ["content cut off inside div.out: 300 px hidden (overflow-x: hidden)"]
    # a visually hidden label (a few px wide) is no content cut off
    assert (
        check.cut_off([box(0, overflow="hidden", scroll=80, client=1)], *column) == []
    )
    # a table past the column, outside any scrollable container: reported once,
    # not again for the cells inside it
    wide = [box(0, right=1400, where="table"), box(1, parent=0, right=1300)]
    assert check.cut_off(wide, *column) == [
        "table reaches 400 px past the article column, outside any scrollable container"
    ]
