"""report.html: one self-contained file per profile run or compare folder, and
the same file opened in headless Chromium (skipped where there is none)."""

import csv
import importlib.util
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from lwprof.reports.html_report import PLOT_GUIDE, REPORT_NAME, write_compare_report, write_profile_report

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("report_in_browser", ROOT / "benchmarks" / "report_in_browser.py")
browser_check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(browser_check)

LAYERS = [
    {"batch_size": 1, "layer": "stem.conv", "module_type": "Conv2d", "op_class": "conv", "params": 432, "macs": 5419008,
     "flops": 10838016, "memory_bytes": 1404928, "memory_bytes_fused": 1404928, "torch_time_s": 0.0004,
     "torch_time_share": 0.4, "torch_roofline_efficiency": 0.5, "torch_bound_by": "memory"},
    # A name a browser must show as text, never run.
    {"batch_size": 1, "layer": "blocks.0.<script>alert(1)</script>", "module_type": "Conv2d", "op_class": "conv_depthwise",
     "params": 144, "macs": 1806336, "flops": 3612672, "memory_bytes": 1605632, "memory_bytes_fused": 1605632,
     "torch_time_s": 0.0006, "torch_time_share": 0.6, "torch_roofline_efficiency": 0.1, "torch_bound_by": "memory"},
    {"batch_size": 1, "layer": "blocks.0.act", "module_type": "ReLU", "op_class": "activation", "params": 0, "macs": 0,
     "flops": 200704, "memory_bytes": 1605632, "memory_bytes_fused": 0, "torch_time_s": "", "torch_time_share": "",
     "torch_roofline_efficiency": "", "torch_bound_by": ""},
]
SVG = '<?xml version="1.0" encoding="utf-8"?>\n<!DOCTYPE svg>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>'


def write_run(folder: Path, model: str = "tinynet") -> Path:
    folder.mkdir(parents=True)
    with (folder / "layers.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(LAYERS[0]))
        writer.writeheader()
        writer.writerows(LAYERS)
    profile = {
        "model": model, "spec": model, "device": "cpu", "backends": ["torch", "onnxruntime"], "measured": ["torch"],
        "input_shapes": {"1": [1, 3, 224, 224]}, "threads": 2, "settings": {"allocator": "auto", "threads": 2},
        "totals": {"params": 576, "macs": 7225344, "flops": 14651392, "memory_bytes": 4616192, "memory_bytes_fused": 3010560},
        "unsupported_ops": {"aten::weird": 1},
        "results": [
            {"backend": "torch", "precision": "fp32", "batch_size": 1, "median_s": 0.00125, "iqr_s": 0.0001, "n": 40,
             "warnings": ["torch cpu batch 1: noisy measurement"]},
            {"backend": "onnxruntime", "precision": "fp32", "batch_size": 1, "median_s": None, "skipped": "not installed"},
        ],
        "environment": {"cpu_model": "Test CPU", "date_utc": "2026-12-06T00:00:00+00:00", "versions": {"torch": "2.13.0"}},
        "wall_time_split_s": {"measure_s": 1.5},
    }
    (folder / "profile.json").write_text(json.dumps(profile))
    (folder / "time_share.svg").write_text(SVG)
    return folder


class Page(HTMLParser):
    """What the report refers to outside itself, its tables and its inline data."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.outside: list[str] = []
        self.scripts: dict[str, str] = {}
        self.rows: dict[str, list[list[tuple[str, str]]]] = {}
        self._script: str | None = None
        self._section: str | None = None
        self._cell: dict[str, str] | None = None
        self._text = ""
        self._in_body = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for name in ("src", "href"):
            if attrs.get(name) and not attrs[name].startswith("#"):
                self.outside.append(attrs[name])
        if tag == "link":
            self.outside.append(str(attrs))
        if tag == "script":
            self._script = attrs.get("id", "inline")
            self.scripts[self._script] = ""
        if tag == "section":
            self._section = attrs["id"]
        if tag == "tbody":
            self._in_body = True
        if tag == "tr" and self._section and self._in_body:
            self.rows.setdefault(self._section, []).append([])
        if tag == "td":
            self._cell, self._text = attrs, ""

    def handle_endtag(self, tag):
        if tag == "script":
            self._script = None
        if tag == "tbody":
            self._in_body = False
        if tag == "td" and self._cell is not None:
            self.rows[self._section][-1].append((self._text, self._cell.get("data-v", "")))
            self._cell = None

    def handle_data(self, data):
        if self._script:
            self.scripts[self._script] += data
        if self._cell is not None:
            self._text += data


def test_profile_report_is_one_self_contained_file(tmp_path):
    run_dir = write_run(tmp_path / "run")
    path = write_profile_report(run_dir)
    assert path == run_dir / REPORT_NAME
    text = path.read_text()
    page = Page(text)
    # Nothing fetched: no stylesheet, script or image from anywhere else (the SVG's xmlns is not a fetch).
    assert page.outside == []
    assert "<?xml" not in text and "<!DOCTYPE svg>" not in text and '<rect width="10" height="10"/>' in text
    title, how_to_read = PLOT_GUIDE["time_share"]
    assert title in text and how_to_read in text
    assert PLOT_GUIDE["roofline"][0] not in text  # no roofline.svg on disk: no empty figure
    # The end-to-end table: shown in ms, sorted by the exact seconds; the skipped backend says why.
    torch_row, ort_row = page.rows["end-to-end"]
    assert torch_row[:4] == [("torch", "torch"), ("fp32", "fp32"), ("1", "1"), ("1.250", "0.00125")]
    assert ("not installed", "not installed") in ort_row
    assert "ops without a counting formula (counted, not costed): aten::weird" in text
    assert "torch cpu batch 1: noisy measurement" in text
    # The layer table travels as data: exact integers, empty cells as null, the layer name as text.
    data = json.loads(page.scripts["layer-data"])
    titles = [c["title"] for c in data["columns"]]
    assert titles[:4] == ["layer", "module", "op class", "params"]  # one batch size: no batch column
    macs = titles.index("MACs")
    assert [row[macs] for row in data["rows"]] == [5419008, 1806336, 0]
    assert data["rows"][2][titles.index("torch ms")] is None
    assert data["rows"][1][0] == "blocks.0.<script>alert(1)</script>"
    assert "<script>alert(1)" not in text  # escaped in the page source
    assert "environment.versions.torch" in text and "2.13.0" in text


def test_compare_report_holds_every_models_layers(tmp_path):
    folder = tmp_path / "compare"
    for model in ("net_a", "net_b"):
        write_run(folder / "models" / model, model)
    rows = [{"model": m, "spec": m, "family": "f", "params": 576, "macs": 7225344, "torch_median_s": s, "torch_iqr_s": 1e-4}
            for m, s in (("net_a", 0.002), ("net_b", 0.001))]
    compare = {"device": "cpu", "backends": ["torch"], "threads": 2, "batch_size": None, "rows": rows,
               "correlations": [{"backend": "torch", "models": 2, "rho_macs": 1.0}], "failures": {"net_c": "no such model"},
               "environment": {"cpu_model": "Test CPU"}}
    (folder / "compare.json").write_text(json.dumps(compare))
    text = write_compare_report(folder).read_text()
    page = Page(text)
    assert [r[0][0] for r in page.rows["end-to-end"]] == ["net_a", "net_b"]
    # MACs, then the proxies this run has no figure for (params, memory access, roofline bound): empty cells.
    assert page.rows["correlations"] == [[("torch", "torch"), ("2", "2.0"), ("1.00", "1.0")] + [("", "")] * 4]
    data = json.loads(page.scripts["layer-data"])
    assert data["columns"][0]["title"] == "model"
    assert [row[0] for row in data["rows"]] == ["net_a"] * 3 + ["net_b"] * 3
    assert re.search(r'<select data-column="0" data-key="model"><option value="">all</option><option>net_a</option>', text)
    assert "net_c: no such model" in text


chromium = browser_check.find_chromium()
needs_browser = pytest.mark.skipif(chromium is None, reason="no Chromium on this machine (apt-get install chromium)")


@needs_browser
def test_report_opens_in_headless_chromium_with_a_view_in_the_address(tmp_path):
    report = write_profile_report(write_run(tmp_path / "run"))
    assert browser_check.check(chromium, report) == []
    count, rows = browser_check.layer_table(browser_check.dump_dom(chromium, report))
    assert count == "3 of 3 matching rows shown (3 in all)"
    assert [r[0] for r in rows] == ["stem.conv", "blocks.0.<script>alert(1)</script>", "blocks.0.act"]
    # Filter words must all appear in a row's text; sort descending by torch time, empty cells last.
    count, rows = browser_check.layer_table(browser_check.dump_dom(chromium, report, "filter=blocks.0&sort=-torch+ms"))
    assert count == "2 of 2 matching rows shown (3 in all)"
    assert [(r[0], r[-4]) for r in rows] == [("blocks.0.<script>alert(1)</script>", "0.600"), ("blocks.0.act", "")]
    _, rows = browser_check.layer_table(browser_check.dump_dom(chromium, report, "sort=MACs"))
    assert [r[0] for r in rows] == ["blocks.0.act", "blocks.0.<script>alert(1)</script>", "stem.conv"]
    png = browser_check.screenshot(chromium, report, tmp_path / "report.png", 800, 600)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
