"""A prediction laid out as a measured profile is: the same layer rows and
summary keys, each predicted figure named ``predicted``.

Per layer (``layers.csv``'s analytic columns, then per backend and
precision key): ``<key>_predicted_s`` on a kernel's first layer (the others
name it in ``<key>_predicted_fused_into`` and it lists them in
``<key>_predicted_fused_layers``, as a measured runtime's fused rows do),
``<key>_predicted_share`` of the predicted kernels' sum and
``<key>_predicted_kernel_type``. Per model: ``profile.json``'s result keys,
``predicted_s`` and ``predicted_not_calibrated`` filled, nothing measured.
"""

from __future__ import annotations

from typing import Any

from lwprof.reports.profile_run import join_layers
from lwprof.runtime.precision import result_key


def predicted_layers(profile: Any, prediction: Any, batch_size: int) -> list[dict[str, Any]]:
    """The analytic layer rows of ``profile`` with the prediction's columns."""
    key = result_key(prediction.calibration.backend, prediction.calibration.precision)
    rows = join_layers(profile, [], {}, batch_size)  # the analytic rows a measured run joins its times to
    by_name = {row["layer"]: row for row in rows}
    per_layer = prediction.layer_seconds()
    total = sum(s for s in per_layer.values() if s is not None) or None
    for layer, seconds in per_layer.items():
        if layer in by_name:
            by_name[layer][f"{key}_predicted_s"] = seconds
            if seconds is not None:
                by_name[layer][f"{key}_predicted_share"] = seconds / total if total else None
    for kernel in prediction.kernels:
        head, *others = kernel.layers
        row = by_name.get(head)
        if row is None:
            continue
        types = row.get(f"{key}_predicted_kernel_type")
        row[f"{key}_predicted_kernel_type"] = kernel.type if not types or kernel.type in types.split() else f"{types} {kernel.type}"
        if others:
            row[f"{key}_predicted_fused_layers"] = " ".join(others)
            for other in others:
                if other in by_name:
                    by_name[other][f"{key}_predicted_fused_into"] = head
    return rows


def predicted_result(prediction: Any, device: str, batch_size: int) -> dict[str, Any]:
    """The model's summary row: a measured profile's keys, the prediction's filled."""
    calibration = prediction.calibration
    return {"backend": calibration.backend, "precision": calibration.precision, "device": device,
            "batch_size": batch_size, **prediction.summary(), "predicted_overhead_s": prediction.once_s,
            "predicted_kernels": len(prediction.kernels), "calibration": calibration.describe()}


def predicted_payload(profile: Any, prediction: Any, spec: str, source: str) -> dict[str, Any]:
    """What ``lwprof predict --format json`` prints: ``profile.json``'s keys
    for what a prediction has, its layer rows under ``layers``."""
    calibration = prediction.calibration
    batch_size = profile.input_shape[0] if profile.input_shape else 1
    device = calibration.device.get("device", "")
    return {
        "model": profile.model, "spec": spec, "device": device, "predicted": True,
        "note": f"predicted from {source}: nothing was timed",
        "backends": [calibration.backend], "batch_sizes": [batch_size],
        "input_shapes": {str(batch_size): list(profile.input_shape)}, "threads": calibration.device.get("threads"),
        "totals": profile.totals, "unsupported_ops": dict(profile.unsupported_ops),
        "results": [predicted_result(prediction, device, batch_size)],
        "calibration": {"file": source, "created": calibration.created, "device": calibration.device,
                        "runtime_version": calibration.runtime_version, "lwprof_version": calibration.lwprof_version,
                        "validation": calibration.validation},
        "layers": predicted_layers(profile, prediction, batch_size),
    }
