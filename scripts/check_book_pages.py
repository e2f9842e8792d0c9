"""Open every chapter of the built book in headless Chromium and check its figures.

Serves ``_build/html`` on a loopback port, loads each page listed in ``_toc.yml``
with Debian's Chromium (driven by Selenium through ``/usr/bin/chromedriver``), and
fails when a page is missing, has no title, or has an image that did not load
(``naturalWidth == 0``). A screenshot of each page goes to ``--shots``.

    .venv/bin/python scripts/check_book_pages.py [--html _build/html] [--shots DIR]

Exit status 0 when every page renders and every image loads, 1 otherwise.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import sys
import tempfile
import threading
from pathlib import Path

import yaml
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--html", default="_build/html", type=Path)
    parser.add_argument("--toc", default="_toc.yml", type=Path)
    parser.add_argument("--shots", default="_build/screenshots", type=Path)
    args = parser.parse_args()
    if not (args.html / "index.html").is_file():
        print(f"check_book_pages: {args.html}/index.html: build the book first")
        return 1
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
    failures = []
    try:
        for page in toc_pages(args.toc):
            if not (args.html / f"{page}.html").is_file():
                failures.append(f"{page}: no HTML page was built")
                continue
            driver.set_window_size(1280, 2000)
            driver.get(f"{base}/{page}.html")
            num_images = driver.execute_script("return document.images.length;")
            broken = driver.execute_script(BROKEN_IMAGES)
            overflow = driver.execute_script(PAGE_OVERFLOW)
            title = driver.title
            shot = args.shots / f"{page.replace('/', '_')}.png"
            driver.save_screenshot(str(shot))
            driver.set_window_size(NARROW, 2000)
            driver.get(f"{base}/{page}.html")
            narrow = driver.execute_script(PAGE_OVERFLOW)
            driver.save_screenshot(str(shot.with_name(f"{shot.stem}_{NARROW}.png")))
            ok = title and not broken and overflow <= 0
            print(
                f"{'ok' if ok else 'FAILED':6} {page}: title {title!r}, {num_images} "
                f"images, {len(broken)} broken, sideways scroll {max(overflow, 0)} px "
                f"at 1280 (and {max(narrow, 0)} px at {NARROW}); screenshot {shot}"
            )
            if not title:
                failures.append(f"{page}: page has no title")
            failures.extend(f"{page}: image did not load: {src}" for src in broken)
            if overflow > 0:
                failures.append(f"{page}: the page scrolls sideways at 1280 px")
    finally:
        driver.quit()
        server.shutdown()
    for failure in failures:
        print(f"check_book_pages: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
