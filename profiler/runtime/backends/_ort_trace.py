"""ONNX Runtime's profiling trace: the kernel events of the timed runs, matched to graph nodes."""

from __future__ import annotations

import bisect
import json
import re
from dataclasses import dataclass
from typing import Any

from lwprof.core.errors import LwprofError
from lwprof.core.text import one_line

KERNEL_SUFFIX = "_kernel_time"
_UNNAMED_EVENT = re.compile(r"^(.+)_(\d+)$")  # the trace's name for an unnamed node: <op>_<index>


@dataclass(frozen=True)
class KernelEvent:
    run: int  # index of the timed run, from 0
    node: str  # the node name as the trace gives it
    op_type: str
    microseconds: int


def read_trace(trace_path: str, warmup: int, runs: int) -> list[KernelEvent]:
    """The kernel events of the timed runs, in time order."""
    try:
        with open(trace_path, encoding="utf-8") as handle:
            events = json.load(handle)
    except Exception as exc:
        raise LwprofError(f"cannot read ONNX Runtime's profile {trace_path}: {one_line(exc)}") from None
    model_runs = sorted(
        (int(e["ts"]), int(e["ts"]) + int(e["dur"]))
        for e in events
        if e.get("cat") == "Session" and e.get("name") == "model_run"
    )
    if len(model_runs) != warmup + runs:
        raise LwprofError(
            f"ONNX Runtime's profile has {len(model_runs)} model_run events for {warmup + runs} runs; "
            "cannot split kernel times per run"
        )
    starts = [start for start, _ in model_runs]
    kernels = []
    for event in events:
        name = event.get("name", "")
        if event.get("cat") != "Node" or not name.endswith(KERNEL_SUFFIX):
            continue
        ts = int(event["ts"])
        run = bisect.bisect_right(starts, ts) - 1
        if run < warmup or ts > model_runs[run][1]:
            continue  # a warm-up run's, or outside every run
        args = event.get("args", {})
        kernels.append((ts, KernelEvent(run - warmup, name[: -len(KERNEL_SUFFIX)], args.get("op_name", ""), int(event["dur"]))))
    kernels.sort(key=lambda item: item[0])
    return [event for _, event in kernels]


class EventMatcher:
    """Trace node names -> optimized-graph node indices.

    A named node is found by name. An unnamed one appears in the trace as
    ``<op>_<index>`` and is matched, within a run, to the next unnamed node
    of that op type after the last node matched (events follow file order);
    the match is kept for the later runs.
    """

    def __init__(self, nodes: list[Any]):
        self.nodes = nodes
        self.by_name: dict[str, int] = {}
        for index, node in enumerate(nodes):
            if node.name:
                self.by_name.setdefault(node.name, index)
        self.matched: dict[str, int | None] = {}
        self.claimed: set[int] = set()
        self.cursor = -1

    def new_run(self) -> None:
        self.cursor = -1

    def node_index(self, name: str, op_type: str) -> int | None:
        index = self.by_name.get(name)
        if index is None:
            if name not in self.matched:
                self.matched[name] = self._unnamed(name, op_type)
            index = self.matched[name]
        if index is not None:
            self.cursor = index
        return index

    def _unnamed(self, name: str, op_type: str) -> int | None:
        match = _UNNAMED_EVENT.match(name)
        if match is None or match.group(1) != op_type:
            return None
        candidates = [
            i
            for i, node in enumerate(self.nodes)
            if not node.name and node.op_type == op_type and i not in self.claimed
        ]
        after = [i for i in candidates if i > self.cursor]
        chosen = (after or candidates or [None])[0]
        if chosen is not None:
            self.claimed.add(chosen)
        return chosen
