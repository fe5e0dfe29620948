"""``lwprof calibrate`` and ``lwprof predict``: a device's kernels timed once,
then any model's latency predicted from the file, without the device."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

from lwprof.commands.common import start
from lwprof.core.errors import LwprofError
from lwprof.reports import console as output
from lwprof.reports.console import Column, OutputFormat
from lwprof.runtime.settings import RunSettings

QUICK_SAMPLES = 3
FULL_SAMPLES = 30


def run_calibrate(*, settings: RunSettings, backend: str, quick: bool, samples: int | None, out: Path,
                  fmt: OutputFormat, types: list[str] | None = None) -> None:
    from lwprof import __version__
    from lwprof.predict.calibrate import collect, fit
    from lwprof.predict.calibration import Calibration
    from lwprof.predict.kernels import FusionRules
    from lwprof.runtime.backends import get_backend
    from lwprof.runtime.environment import cpu_model
    from lwprof.runtime.roofline import device_fingerprint

    (name,) = start(settings, backend) if "," not in backend else (None,)
    if name is None:
        raise LwprofError("calibrate takes one backend: a calibration describes one runtime")
    runtime = get_backend(name)
    reason = runtime.unavailable_reason(settings.device) or runtime.precision_problem(settings.precision)
    if reason is not None:
        raise LwprofError(f"{name} cannot be calibrated here: {reason}")
    per_type = samples or (QUICK_SAMPLES if quick else FULL_SAMPLES)
    with output.stderr.status(f"{name}: timing kernels on {settings.device}") as status:
        overhead, timed = collect(name, settings, per_type, progress=lambda line: status.update(f"{name}: {line}"),
                                  types=types)
    regressors, validation = fit(timed)
    calibration = Calibration(
        device={"fingerprint": device_fingerprint(settings, name), "device": settings.device, "cpu": cpu_model(),
                "threads": settings.threads},
        backend=name, runtime_version=runtime.runtime_version(), precision=settings.precision, rules=FusionRules(),
        regressors=regressors, overhead_s=overhead, validation=validation,
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), lwprof_version=__version__)
    calibration.save(out)
    output.info(f"wrote {out}")
    rows = [{"kernel_type": kernel_type, **figures} for kernel_type, figures in sorted(validation.items())]
    output.emit(rows, [
        Column("kernel_type", "kernel type"),
        Column("samples", "samples", str, "right"),
        Column("held_out", "held out", str, "right"),
        Column("median_relative_error", "median error", _percent, "right"),
        Column("max_relative_error", "max error", _percent, "right"),
    ], fmt, title=f"{name} on {settings.device}: kernel fits (overhead {overhead * 1e6:.1f} us per call)")


def _percent(value: Any) -> str:
    return "" if value is None else f"{value * 100:.1f}%"


def run_predict(*, spec: str, calibration_path: Path, input_shape: str | None, fmt: OutputFormat) -> None:
    from lwprof.commands.common import count
    from lwprof.predict.calibration import Calibration
    from lwprof.runtime.loader import load_model, parse_shape

    calibration = Calibration.load(calibration_path)
    loaded = load_model(spec, parse_shape(input_shape) if input_shape is not None else None)
    if loaded.module is None:
        raise LwprofError(f"predict splits a PyTorch module into kernels; {loaded.name} has no module")
    prediction = calibration.predict(count(loaded))
    for kernel_type in prediction.unseen_types:
        output.warn(f"kernel type '{kernel_type}' was never calibrated: its kernels are not predicted (listed as such)")
    errors = [v.get("median_relative_error") for v in calibration.validation.values() if v.get("median_relative_error") is not None]
    if errors:
        output.info(f"calibration: {calibration.backend} {calibration.runtime_version} on {calibration.device.get('cpu')}, "
                    f"held-out kernel error median {sorted(errors)[len(errors) // 2] * 100:.1f}% over {len(errors)} types")
    rows = [{"layer": kernel.layers[0], "kernel_type": kernel.type, "predicted_time_s": seconds,
             "fused_layers": " ".join(kernel.layers[1:]), "flops": int(kernel.features["flops"]),
             "memory_bytes": int(kernel.features["memory_bytes"])}
            for kernel, seconds in zip(prediction.kernels, prediction.seconds)]
    rows.append({"layer": "(total, predicted)", "kernel_type": "", "predicted_time_s": prediction.total_s,
                 "fused_layers": f"overhead {calibration.overhead_s * 1e3:.3f} ms included", "flops": None,
                 "memory_bytes": None})
    output.emit(rows, [
        Column("layer", "layer"),
        Column("kernel_type", "kernel type"),
        Column("predicted_time_s", "predicted ms", lambda v: "not calibrated" if v is None else f"{v * 1e3:.3f}", "right"),
        Column("fused_layers", "also covers"),
    ] if fmt is OutputFormat.table else [Column(key, key) for key in rows[0]], fmt,
        title=f"{loaded.name}: predicted latency on {calibration.backend} ({calibration.device.get('device')})")
