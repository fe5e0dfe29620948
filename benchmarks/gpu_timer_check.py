"""Cross-check of lwprof's CUDA timing: a plain CUDA-event loop in a fresh
process beside ``lwprof profile --backend torch``, alternating, per model.

The reference side shares nothing with lwprof's measurement code: it builds
the zoo model (``lwprof.models`` only), moves it to the device and times
``model(x)`` with a pair of ``torch.cuda.Event`` per pass after warm-up, the
way a user's own loop would (``torch.inference_mode``, synchronize after
each pass). On a machine without CUDA (``--device cpu``, the dry run) the
reference uses ``time.perf_counter`` instead, so the whole path is
rehearsed.

    python benchmarks/gpu_timer_check.py --models mobilenet_v3_large_100 resnet18 --pairs 2 --out results.json

Prints one line per model (both medians and the median of per-pair ratios)
and writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REFERENCE_CODE = r"""
import json, statistics, sys, time
import torch
from lwprof.models import create_model, get_model_info

name, device, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
model = create_model(name).eval().to(device)
x = torch.randn(*get_model_info(name).input_shape, device=device)
samples = []
with torch.inference_mode():
    for _ in range(10):
        model(x)
    if device == "cuda":
        torch.cuda.synchronize()
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(samples) < 10:
        if device == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            model(x)
            end.record()
            end.synchronize()
            samples.append(start.elapsed_time(end) / 1000.0)
        else:
            started = time.perf_counter()
            model(x)
            samples.append(time.perf_counter() - started)
print(json.dumps({"median_s": statistics.median(samples), "n": len(samples)}))
"""


def reference(name: str, device: str, seconds: float) -> dict:
    done = subprocess.run([sys.executable, "-c", REFERENCE_CODE, name, device, str(seconds)],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def lwprof_median(name: str, device: str, seconds: float, work: Path) -> float:
    done = subprocess.run(
        [sys.executable, "-m", "lwprof", "profile", name, "--device", device, "--backend", "torch", "--layer-runs", "0",
         "--min-time", str(seconds), "--max-time", str(seconds), "--format", "json", "--reports-dir", str(work)],
        capture_output=True, text=True, check=True)
    result = json.loads(done.stdout)["results"][0]
    return float(result["median_s"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["mobilenet_v3_large_100", "resnet18"])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    rows = []
    for name in args.models:
        ours, theirs = [], []
        for _ in range(args.pairs):
            ours.append(lwprof_median(name, args.device, args.seconds, args.out.parent / "timer-check-runs"))
            theirs.append(reference(name, args.device, args.seconds)["median_s"])
        ratios = [a / b for a, b in zip(ours, theirs)]
        row = {"model": name, "device": args.device, "lwprof_median_s": ours, "reference_median_s": theirs,
               "ratio_median": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios)}
        rows.append(row)
        print(f"{name}: lwprof {statistics.median(ours) * 1e3:.3f} ms, plain loop {statistics.median(theirs) * 1e3:.3f} ms, "
              f"ratio {row['ratio_median']:.3f} ({row['ratio_min']:.3f}-{row['ratio_max']:.3f}) over {args.pairs} pairs")
    args.out.write_text(json.dumps({"rows": rows, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
