"""Open lwprof's ``report.html`` files in a real browser: headless Chromium.

Renders each report from disk (``file://``, so nothing can be fetched) to a
PNG, and checks the page its script built: the per-layer table holds rows,
and a view given in the address (``#filter=...&sort=...``) filters and sorts
it. Exit status 0 when every report passes, 1 when one does not, 2 when there
is no browser (Debian: ``apt-get install chromium``)::

    python benchmarks/report_in_browser.py RUN_DIR/report.html [...] --png-dir reports/html

``tests/test_html_report.py`` uses the same functions and skips when
:func:`find_chromium` finds nothing.
"""

from __future__ import annotations

import argparse
import html
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
from pathlib import Path

# Without the background-networking switches Chromium tries to reach Google's
# hosts at start; --no-sandbox because CI runs as root.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--virtual-time-budget=5000"]
TIMEOUT_S = 120


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _address(report: Path, view: str) -> str:
    """The file's address, with ``view`` (``filter=a b&sort=-x``) as its fragment."""
    return report.resolve().as_uri() + ("#" + urllib.parse.quote(view, safe="=&-_.") if view else "")


def _run(browser: str, arguments: list[str]) -> str:
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run([browser, *FLAGS, f"--user-data-dir={profile}", *arguments], capture_output=True,
                              text=True, timeout=TIMEOUT_S, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"chromium exited {done.returncode}: {done.stderr.strip()[-500:]}")
    return done.stdout


def dump_dom(browser: str, report: Path, view: str = "") -> str:
    """The page's DOM after its script ran, opened with ``#view`` in the address."""
    return _run(browser, ["--dump-dom", _address(report, view)])


def screenshot(browser: str, report: Path, png: Path, width: int = 1400, height: int = 2000, view: str = "") -> Path:
    """The top ``height`` pixels of ``report`` as the browser shows it, opened
    with ``#view``; reduced to a 64-colour palette (a page is mostly flat
    colour, so it reads the same at a third of the size)."""
    png.parent.mkdir(parents=True, exist_ok=True)
    _run(browser, [f"--window-size={width},{height}", f"--screenshot={png.resolve()}", _address(report, view)])
    if not png.exists():
        raise RuntimeError(f"chromium wrote no {png}")
    from PIL import Image  # matplotlib's dependency, so installed with lwprof

    with Image.open(png) as image:
        reduced = image.convert("RGB").quantize(colors=64)
    reduced.save(png, optimize=True)
    return png


def layer_table(dom: str) -> tuple[str, list[list[str]]]:
    """The per-layer table as the browser built it: its count line and its rows' cells."""
    count = re.search(r'id="layer-count"[^>]*>([^<]*)<', dom)
    table = dom[dom.index('id="layer-table"'):]
    table = table[:table.index("</table>")]
    body = table[table.index("<tbody"):]
    rows = [[html.unescape(re.sub(r"<[^>]+>", "", c)) for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
            for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)]
    return (count.group(1) if count else ""), rows


def check(browser: str, report: Path) -> list[str]:
    """What is wrong with ``report`` in the browser (empty: nothing)."""
    problems = []
    dom = dump_dom(browser, report)
    count, rows = layer_table(dom)
    if not rows:
        problems.append("the per-layer table is empty")
    if not re.match(r"\d+ of \d+ matching rows shown", count):
        problems.append(f"no row count (the table's script did not run?): {count!r}")
    if "<svg" not in dom and "id=\"plots\"" in dom:
        problems.append("plots section without an inline SVG")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("reports", nargs="+", type=Path, help="report.html files")
    parser.add_argument("--png-dir", type=Path, help="write a screenshot of each here (NAME.png from its folder)")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=2000)
    parser.add_argument("--view", default="", help="open the screenshots with this view, e.g. 'filter=ghostnet_100&sort=-torch ms'")
    args = parser.parse_args(argv)
    browser = find_chromium()
    if browser is None:
        print("no Chromium on this machine (Debian: apt-get install chromium)", file=sys.stderr)
        return 2
    version = subprocess.run([browser, "--version"], capture_output=True, text=True, check=False).stdout.strip()
    print(f"browser: {version}", file=sys.stderr)
    failed = False
    for report in args.reports:
        problems = check(browser, report)
        status = "ok" if not problems else "FAILED: " + "; ".join(problems)
        print(f"{report}: {status}")
        failed |= bool(problems)
        if args.png_dir is not None:
            png = screenshot(browser, report, args.png_dir / f"{report.parent.name}.png", args.width, args.height, args.view)
            print(f"  screenshot {png}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
