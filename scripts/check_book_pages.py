"""Check what a reader sees of the built book, page by page, in headless Chromium.

Writes no committed file: screenshots go to ``--shots`` (``make test`` runs it).

Serves ``_build/html`` on a loopback port, loads each page listed in ``_toc.yml``
with Debian's Chromium (driven by Selenium through ``/usr/bin/chromedriver``) at a
width of 1280 px, and fails when

- a page is missing or has no title;
- an image did not load (``naturalWidth == 0``);
- the page scrolls sideways;
- the same figure is shown twice on a page: the images of the article (icons and
  logos under :data:`MIN_FIGURE_PX` a side left out) are compared by content, the
  SHA-256 of their decoded pixels (of their bytes where Pillow cannot decode them),
  so a figure that a cell both glues and displays is caught whatever its file name;
- content is cut off inside a container: an element whose content is wider than its
  box (``scrollWidth > clientWidth``) while its ``overflow-x`` is ``hidden`` or
  ``clip``; or that scrolls (``auto``, ``scroll``) behind the browser's own
  scrollbar, which macOS, phones and full-page screenshots do not draw, so that a
  wide table looks cut at the right edge (a scrollbar the book styles with
  ``::-webkit-scrollbar``, as ``_static/conceptlib.css`` does, is always drawn); or
  an element that reaches past the article column without a scrollable container
  between them (margin notes, sidebars and full-width blocks of the theme are meant
  to do so, and are left out).

A full-page screenshot of each page at 1280 px goes to ``--shots`` (``<page>.png``),
with the first screen at 390 px (``<page>_390.png``), where sideways scroll is
reported, not failed.

    .venv/bin/python scripts/check_book_pages.py [--html _build/html] [--shots DIR]

Exit status 0 when every page passes, 1 otherwise; failures are listed per page.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import functools
import hashlib
import http.server
import io
import sys
import tempfile
import threading
import urllib.request
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,2000",
)
WIDTH = 1280
#: Wider than the window: the page scrolls sideways (a table or figure too wide).
PAGE_OVERFLOW = (
    "return Math.max(document.documentElement.scrollWidth,"
    " document.body.scrollWidth) - window.innerWidth;"
)
#: Phone width: screenshots and overflow are reported, not failed.
NARROW = 390
BROKEN_IMAGES = (
    "return Array.from(document.images)"
    ".filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src);"
)
#: Images smaller than this on either side (icons, logos, badges) are not figures.
MIN_FIGURE_PX = 64
#: The tallest screenshot taken (Chromium draws no taller window).
MAX_SHOT_PX = 16000
#: Pixels of rounding that a box may differ by before content counts as cut off.
TOLERANCE_PX = 1

#: The article column: what a reader reads, without the theme's sidebars and header.
_ARTICLE = (
    "const root = document.querySelector('article.bd-article')"
    " || document.querySelector('main') || document.body;"
)
#: Where an element is, in words: the figure (by its number), else the cell, else
#: the element itself with its classes.
_DESCRIBE = """
const describe = el => {
  const fig = el.closest('figure');
  if (fig) {
    const num = fig.querySelector('.caption-number');
    return (num ? num.textContent.trim() : 'figure') + (fig.id ? ` (#${fig.id})` : '');
  }
  const own = el.tagName.toLowerCase() + (el.id ? '#' + el.id : '')
    + Array.from(el.classList).slice(0, 3).map(c => '.' + c).join('');
  const cell = el.closest('.cell');
  if (cell) {
    const cells = Array.from(root.querySelectorAll('.cell'));
    return `${own} in code cell ${cells.indexOf(cell) + 1}`;
  }
  const sec = el.closest('section');
  const head = sec && sec.querySelector('h1, h2, h3, h4');
  return head ? `${own} under "${head.textContent.replace('#', '').trim()}"` : own;
};
"""
#: Every image of the article with its size and where it is.
ARTICLE_IMAGES = (
    _ARTICLE
    + _DESCRIBE
    + """
return Array.from(root.querySelectorAll('img')).map(i => ({
  src: i.currentSrc || i.src, width: i.naturalWidth, height: i.naturalHeight,
  where: describe(i)}));
"""
)
#: Elements of the article whose content is wider than their box, or whose box
#: reaches past the article column; :func:`cut_off` decides which are cut off.
WIDE_BOXES = (
    _ARTICLE
    + _DESCRIBE
    + """
const col = root.getBoundingClientRect();
const meant = '.margin, .sidebar, aside, .full-width, .headerlink, .tooltip';
const scrolls = el => ['auto', 'scroll'].includes(getComputedStyle(el).overflowX);
const found = [];
const ids = new Map();
for (const el of root.querySelectorAll('*')) {
  const r = el.getBoundingClientRect();
  if (r.width === 0 || r.height === 0 || el.closest(meant)) continue;
  const cs = getComputedStyle(el);
  if (cs.visibility === 'hidden' || cs.position === 'fixed') continue;
  const inner = el.scrollWidth > el.clientWidth + TOL;
  const outside = r.right > col.right + TOL || r.left < col.left - TOL;
  if (!inner && !outside) continue;
  let parent = -1, scrollable = false;
  for (let a = el.parentElement; a && a !== root; a = a.parentElement) {
    if (parent < 0 && ids.has(a)) parent = ids.get(a);
    if (!scrollable && scrolls(a)) scrollable = true;
  }
  const bar = getComputedStyle(el, '::-webkit-scrollbar');
  const thumb = getComputedStyle(el, '::-webkit-scrollbar-thumb');
  ids.set(el, found.length);
  found.push({id: found.length, parent, where: describe(el),
    overflow_x: cs.overflowX, scroll_width: el.scrollWidth,
    client_width: el.clientWidth, left: r.left, right: r.right,
    in_scroll_container: scrollable,
    scrollbar_drawn: !['auto', '0px'].includes(bar.height)
      && thumb.backgroundColor !== 'rgba(0, 0, 0, 0)'});
}
return {left: col.left, right: col.right, boxes: found};
""".replace("TOL", str(TOLERANCE_PX))
)


# -- detection (pure: unit-tested without a browser) ---------------------------------


def image_key(data: bytes) -> str:
    """What an image shows: the SHA-256 of its size and decoded RGBA pixels, so that
    two encodings of one figure match; of its bytes where Pillow cannot decode it."""
    try:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as img:
            pixels = img.convert("RGBA")
            head = f"{pixels.width}x{pixels.height}:".encode()
            return hashlib.sha256(head + pixels.tobytes()).hexdigest()
    except Exception:  # noqa: BLE001 - not an image Pillow reads: compare bytes
        return hashlib.sha256(data).hexdigest()


def data_uri_bytes(src: str) -> bytes | None:
    """The bytes of a ``data:`` URI (base64 or plain), None for any other source."""
    if not src.startswith("data:") or "," not in src:
        return None
    head, body = src[5:].split(",", 1)
    if head.endswith(";base64"):
        try:
            return base64.b64decode(body)
        except (binascii.Error, ValueError):
            return None
    return urllib.request.unquote_to_bytes(body)


def duplicate_figures(
    images: Iterable[dict[str, Any]], min_px: int = MIN_FIGURE_PX
) -> list[str]:
    """One message per figure shown more than once among ``images``.

    Each image is a dict with ``key`` (its content, see :func:`image_key`),
    ``width`` and ``height`` (natural size, px) and ``where`` (a description).
    Images under ``min_px`` on a side are icons, not figures, and are left out.
    """
    seen: dict[str, list[str]] = {}
    for img in images:
        if img.get("key") is None or min(img["width"], img["height"]) < min_px:
            continue
        seen.setdefault(img["key"], []).append(img["where"])
    return [
        f"the same figure is shown {len(where)} times: {'; '.join(where)}"
        for where in seen.values()
        if len(where) > 1
    ]


def cut_off(
    boxes: Sequence[dict[str, Any]],
    left: float,
    right: float,
    tol: float = TOLERANCE_PX,
) -> list[str]:
    """One message per element whose content a reader cannot see in full.

    ``boxes`` are elements of the article (as :data:`WIDE_BOXES` returns them:
    ``id``, ``parent`` (the id of the nearest listed ancestor, -1 if none),
    ``where``, ``overflow_x``, ``scroll_width``, ``client_width``, ``left``,
    ``right``, ``in_scroll_container``, ``scrollbar_drawn``: whether the page
    styles its scrollbar, so that it is drawn everywhere); ``left`` and ``right``
    bound the article column. Cut off: content wider than a box that hides its
    overflow (``hidden`` or ``clip``) or that scrolls without a drawn scrollbar, or
    a box past the column with no scrollable container around it. Only the
    outermost such element is reported, not everything inside it.
    """
    bad: dict[int, str] = {}
    by_id = {b["id"]: b for b in boxes}
    for box in boxes:
        ancestor, reported = box["parent"], False
        while ancestor >= 0:
            if ancestor in bad:
                reported = True
                break
            ancestor = by_id[ancestor]["parent"] if ancestor in by_id else -1
        if reported:
            continue
        hidden = box["scroll_width"] - box["client_width"]
        # a box a few px wide that hides its content is a visually hidden label
        clips = box["overflow_x"] in ("hidden", "clip") and box["client_width"] > 8
        if clips and hidden > tol:
            bad[box["id"]] = (
                f"content cut off inside {box['where']}: {hidden} px hidden "
                f"(overflow-x: {box['overflow_x']})"
            )
        elif (
            box["overflow_x"] in ("auto", "scroll")
            and hidden > tol
            and (not box.get("scrollbar_drawn", False))
        ):
            bad[box["id"]] = (
                f"content cut off inside {box['where']}: {hidden} px to the right "
                "behind the browser's own scrollbar, which macOS, phones and "
                "screenshots do not draw (style it, see _static/conceptlib.css)"
            )
        elif not box["in_scroll_container"] and (
            box["right"] > right + tol or box["left"] < left - tol
        ):
            past = max(box["right"] - right, left - box["left"])
            bad[box["id"]] = (
                f"{box['where']} reaches {past:.0f} px past the article column, "
                "outside any scrollable container"
            )
    return list(bad.values())


# -- the browser ---------------------------------------------------------------------


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files without logging each request."""

    def log_message(self, *args) -> None:  # noqa: D102
        pass


def toc_pages(toc: Path) -> list[str]:
    """Every file named in a Jupyter Book ``_toc.yml``, root first, without suffix."""
    data = yaml.safe_load(toc.read_text())
    pages = [data["root"]]

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                pages.append(node["file"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(data.get("parts", data.get("chapters", [])))
    return [str(Path(p).with_suffix("")) for p in pages]


def image_bytes(src: str) -> bytes | None:
    """The bytes an image source points to (a data URI or the local server)."""
    data = data_uri_bytes(src)
    if data is not None or src.startswith("data:"):
        return data
    try:
        with urllib.request.urlopen(src, timeout=30) as response:
            return response.read()
    except OSError:
        return None


def full_page_screenshot(driver, path: Path) -> None:
    """The whole page, top to bottom, at the window's width: the window is made as
    tall as the page for the shot (the theme lays a page out for the window it is
    in), then given back its height."""
    size = driver.get_window_size()
    width, height = size["width"], size["height"]
    tall = driver.execute_script(
        "return Math.max(document.documentElement.scrollHeight,"
        " document.body.scrollHeight);"
    )
    chrome = height - driver.execute_script("return window.innerHeight;")
    driver.set_window_size(width, min(tall + chrome, MAX_SHOT_PX))
    try:
        driver.save_screenshot(str(path))
    finally:
        driver.set_window_size(width, height)


def check_page(driver, url: str, shot: Path) -> tuple[list[str], str]:
    """The failures of one page at 1280 px, and a line that sums it up."""
    driver.set_window_size(WIDTH, 2000)
    driver.get(url)
    title = driver.title
    broken = driver.execute_script(BROKEN_IMAGES)
    overflow = driver.execute_script(PAGE_OVERFLOW)
    images = driver.execute_script(ARTICLE_IMAGES)
    for img in images:
        data = image_bytes(img["src"])
        img["key"] = image_key(data) if data else None
    twice = duplicate_figures(images)
    wide = driver.execute_script(WIDE_BOXES)
    cut = cut_off(wide["boxes"], wide["left"], wide["right"])
    full_page_screenshot(driver, shot)
    failures = [] if title else ["page has no title"]
    failures += [f"image did not load: {src}" for src in broken]
    if overflow > 0:
        failures.append(f"the page scrolls sideways by {overflow} px at {WIDTH} px")
    failures += twice + cut
    figures = sum(min(i["width"], i["height"]) >= MIN_FIGURE_PX for i in images)
    summary = (
        f"title {title!r}, {figures} figure images, {len(broken)} broken, "
        f"{len(twice)} shown twice, {len(cut)} cut off, sideways scroll "
        f"{max(overflow, 0)} px"
    )
    return failures, summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--html", default="_build/html", type=Path)
    parser.add_argument("--toc", default="_toc.yml", type=Path)
    parser.add_argument("--shots", default="_build/screenshots", type=Path)
    args = parser.parse_args()
    if not (args.html / "index.html").is_file():
        print(f"check_book_pages: {args.html}/index.html: build the book first")
        return 1
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    args.shots.mkdir(parents=True, exist_ok=True)
    handler = functools.partial(QuietHandler, directory=str(args.html))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(
        service=Service(executable_path="/usr/bin/chromedriver"), options=options
    )
    failures: dict[str, list[str]] = {}
    try:
        for page in toc_pages(args.toc):
            if not (args.html / f"{page}.html").is_file():
                failures[page] = ["no HTML page was built"]
                print(f"FAILED {page}: no HTML page was built")
                continue
            shot = args.shots / f"{page.replace('/', '_')}.png"
            found, summary = check_page(driver, f"{base}/{page}.html", shot)
            driver.set_window_size(NARROW, 2000)
            driver.get(f"{base}/{page}.html")
            narrow = driver.execute_script(PAGE_OVERFLOW)
            driver.save_screenshot(str(shot.with_name(f"{shot.stem}_{NARROW}.png")))
            print(
                f"{'FAILED' if found else 'ok':6} {page}: {summary} at {WIDTH} "
                f"(and {max(narrow, 0)} px at {NARROW}); screenshot {shot}"
            )
            if found:
                failures[page] = found
    finally:
        driver.quit()
        server.shutdown()
    for page, found in failures.items():
        for failure in found:
            print(f"check_book_pages: {page}: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
