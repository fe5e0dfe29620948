"""Plots: every figure is written as PNG and SVG; the share chart ranks and sums layers as it says."""

import pytest

from lwprof.reports import plots
from lwprof.reports.plots import plot_guideline_table, plot_roofline, plot_time_vs_flop_share
from lwprof.runtime.roofline import DevicePeaks

PEAKS = DevicePeaks("torch", "cpu", 2, peak_flops_per_s=1e11, bandwidth_bytes_per_s=1e10)
ROWS = [
    {"layer": f"l{i}", "flops": 1000 * (i + 1), "memory_bytes": 400, "time_s": {"torch": 0.001 * (i + 1), "onnxruntime": None}}
    for i in range(25)
]
POINTS = [
    {"layer": "a", "intensity": 2.0, "achieved_flops_per_s": 1e9, "backend": "torch", "op_class": "conv"},
    {"layer": "b", "intensity": 0.2, "achieved_flops_per_s": 1e8, "backend": "torch", "op_class": "activation"},
    {"layer": "c", "intensity": 20.0, "achieved_flops_per_s": 5e9, "backend": "onnxruntime", "op_class": None},
]


def _written(paths):
    assert [p.suffix for p in paths] == [".png", ".svg"]
    png, svg = paths
    assert png.read_bytes().startswith(b"\x89PNG") and png.stat().st_size > 1000
    assert b"<svg" in svg.read_bytes()[:2000] and svg.stat().st_size > 1000
    return paths


def test_every_plot_writes_png_and_svg(tmp_path):
    guideline_rows = [
        {"row": "g=1", "scale": 1, "backend": "torch", "paper_normalized": 1.0, "measured_normalized": 1.0},
        {"row": "g=8", "scale": 1, "backend": "torch", "paper_normalized": 0.7, "measured_normalized": 0.5},
    ]
    names = [
        p.name
        for paths in (
            plot_time_vs_flop_share(ROWS, tmp_path / "share", "t"),
            plot_roofline(POINTS, {"torch": PEAKS, "onnxruntime": PEAKS}, tmp_path / "nested" / "roof", "t"),
            plot_guideline_table(2, guideline_rows, tmp_path / "table2", "arm", "cpu"),
        )
        for p in _written(paths)
    ]
    assert names == ["share.png", "share.svg", "roof.png", "roof.svg", "table2.png", "table2.svg"]


def test_share_chart_shows_top_layers_by_time_and_sums_the_rest(tmp_path, monkeypatch):
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, stem: figures.append(fig) or [])
    plot_time_vs_flop_share(ROWS, tmp_path / "share", "t", top=20)
    (axes,) = figures[0].axes
    labels = [t.get_text() for t in axes.get_yticklabels()]
    assert labels == [f"l{i}" for i in range(24, 4, -1)] + ["other layers (5)"]  # slowest first
    legend = [t.get_text() for t in axes.get_legend().get_texts()]
    assert legend == ["time, torch", "FLOPs", "memory access"]  # a backend without times gets no bars
    for container in axes.containers:  # each series covers the whole model
        assert sum(bar.get_width() for bar in container) == pytest.approx(100.0)


def test_plots_survive_missing_measurements(tmp_path):
    untimed = [{"layer": "a", "flops": 0, "memory_bytes": 0, "time_s": {"torch": None}}]
    _written(plot_time_vs_flop_share(untimed, tmp_path / "untimed", "t"))
    _written(plot_time_vs_flop_share([], tmp_path / "empty", "t"))
    no_intensity = [{"layer": "a", "intensity": None, "achieved_flops_per_s": 1e9, "backend": "torch", "op_class": None}]
    _written(plot_roofline(no_intensity, {"torch": PEAKS}, tmp_path / "roof", "t"))


def test_log_ticks_are_short_and_labels_never_overlap():
    import random

    from lwprof.reports.plots import _compact, _label_without_overlap, _pyplot, _readable_log_axis

    assert [_compact(v) for v in (0.5, 20, 1500, 2e7, 3e9)] == ["0.5", "20", "1.5k", "20M", "3G"]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4, 3))
    rng = random.Random(0)
    points = [(f"model_{i}", 10 ** rng.uniform(6, 7), 10 ** rng.uniform(0, 1)) for i in range(60)]  # a dense cloud
    ax.scatter([x for _, x, _ in points], [y for _, _, y in points])
    ax.set_xscale("log")
    ax.set_yscale("log")
    _readable_log_axis(ax.xaxis)
    placed = _label_without_overlap(ax, points)
    renderer = fig.canvas.get_renderer()
    boxes = [text.get_window_extent(renderer) for text in ax.texts]
    assert 0 < placed == len(boxes) < len(points)  # some left out rather than piled up
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.xaxis.get_ticklabels() if t.get_text()]
    assert labels and all(len(label) <= 4 for label in labels)  # "1M", "2M", "5M", "10M"
    plt.close(fig)
