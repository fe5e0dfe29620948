"""``lwprof report RUN_DIR``: re-render a saved compare folder or profile run, measuring nothing."""

from __future__ import annotations

import json
from pathlib import Path

from lwprof.core.errors import LwprofError
from lwprof.reports import console as output
from lwprof.reports.console import OutputFormat


def run_report(run_dir: Path, fmt: OutputFormat) -> None:
    from lwprof.commands.compare import print_compare
    from lwprof.reports.compare_report import render
    from lwprof.reports.html_report import write_compare_report, write_profile_report
    from lwprof.reports.profile_run import render_saved_run

    if not run_dir.is_dir():
        raise LwprofError(f"{run_dir} is not a directory")
    if (run_dir / "compare.json").exists():
        written = render(run_dir) + [write_compare_report(run_dir)]
        print_compare(json.loads((run_dir / "compare.json").read_text()), fmt, "order")
    elif (run_dir / "profile.json").exists() and (run_dir / "layers.csv").exists():
        written = render_saved_run(run_dir) + [write_profile_report(run_dir)]
    else:
        raise LwprofError(f"{run_dir} holds neither compare.json nor profile.json + layers.csv: not an lwprof run directory")
    output.info("wrote " + ", ".join(str(p) for p in written))
