"""Calibrating a device: micro-benchmarks of the kernel types lightweight
networks are made of, timed on one runtime, one regressor fitted per type,
and synthetic networks to learn how kernels cost in context.

Each kernel type's sampler (:mod:`lwprof.predict.samplers`) draws
configurations; a draw that the runtime's learned fusion rules split into
several kernels is passed over. Every sample is a fresh model of one kernel:
lwprof stages and prepares it on the backend like any model, times it end to end,
and subtracts what a model pays once, not per kernel: the runtime's per-call
overhead (fitted on chains of trivial kernels), so the kernel's own time,
with its dispatch, is what the regressor learns; a prediction adds the
overhead back once per model.

The zoo is never timed here: calibration sees synthetic kernels only, so the
zoo stays a held-out test set (``benchmarks/predict_accuracy.py``).
"""

from __future__ import annotations

import contextlib
import json
import random
import statistics
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from lwprof.core.errors import LwprofError
from lwprof.predict.kernels import FEATURES, FusionRules, decompose
from lwprof.predict.regressor import fit_regressor, regressor_kinds
from lwprof.predict.samplers import configurations

if TYPE_CHECKING:
    from lwprof.runtime.settings import RunSettings

# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    kernel_type: str
    index: int  # the index-th draw of its type that is one kernel under the rules: the same seed, the same kernel
    features: list[float]
    seconds: float  # the kernel's own time: end to end, less the per-call overhead
    measured_s: float  # end to end, as timed

    def to_dict(self) -> dict[str, Any]:
        return {"kernel_type": self.kernel_type, "index": self.index, "features": self.features,
                "seconds": self.seconds, "measured_s": self.measured_s}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Sample":
        return cls(str(data["kernel_type"]), int(data["index"]), [float(v) for v in data["features"]],
                   float(data["seconds"]), float(data["measured_s"]))


@contextlib.contextmanager
def prepared(module: Any, input_shape: tuple[int, ...], backend: str, settings: "RunSettings", name: str) -> Iterator[Any]:
    """A backend session of ``module``, staged and prepared as any model is, in this process."""
    from lwprof.runtime.backends import get_backend
    from lwprof.runtime.loader import LoadedModel
    from lwprof.runtime.outputs import example_input

    runtime = get_backend(backend)
    model = LoadedModel(name, "torch", module, None, tuple(input_shape), "file")
    staged = runtime.stage(model, input_shape, settings).model
    if staged.module is None:  # staging keeps a zoo model's recipe, not a module built here
        staged = replace(staged, module=module)
    with runtime.prepare(staged, example_input(tuple(input_shape)), settings) as session:
        yield session


def time_module(module: Any, input_shape: tuple[int, ...], backend: str, settings: "RunSettings", name: str) -> float:
    """Median seconds of one inference of ``module`` on ``backend``."""
    from lwprof.runtime.measure import time_kernel

    with prepared(module, input_shape, backend, settings, name) as session:
        return time_kernel(session.run, settings.budget, session.timer).median


CHAIN_LENGTHS = (1, 2, 4, 8, 16)


def _chain(length: int) -> Any:
    import torch
    from torch import nn

    class Chain(nn.Module):
        """``length`` additions of a constant to one small tensor: kernels with
        next to nothing to compute (a convolution would not do: eager
        PyTorch's oneDNN call costs tens of microseconds before computing)."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for _ in range(length):
                x = x + 1.0
            return x

    return Chain().eval()


def overhead_s(backend: str, settings: "RunSettings") -> tuple[float, float]:
    """The runtime's time per call and per kernel, from chains of 1 to 16
    kernels that compute next to nothing, fitted as ``call + n * kernel``.
    Only the per-call part is taken out of a sample: a kernel's dispatch
    (eager PyTorch's operator call, its thread pool's wake-up) is part of
    what each kernel of a model costs."""
    import numpy as np

    times = [time_module(_chain(n), (1, 8, 1, 1), backend, settings, f"lwprof-chain-{n}") for n in CHAIN_LENGTHS]
    per_kernel, per_call = np.polyfit(CHAIN_LENGTHS, times, 1)
    # A noisy fit never makes the call cost negative or larger than the one-kernel chain.
    return float(min(max(per_call, 0.0), times[0])), float(max(per_kernel, 0.0))


class Journal:
    """The samples of one calibration, appended to a JSON-lines file as each
    is timed, so an interrupted run resumes where it stopped. Its first line
    says what the run is (backend, precision, device, seed, budget); a
    journal of another run is not resumed but replaced, with a note."""

    def __init__(self, path: Path | None, plan: dict[str, Any], note: Callable[[str], None] | None = None) -> None:
        self.path, self.plan = path, plan
        self.overhead: float | None = None  # per call
        self.dispatch: float | None = None  # per kernel, inside every sample
        self.rules: FusionRules | None = None  # learned once: the samples drawn depend on them
        self.networks: dict[int, float] = {}  # synthetic network index -> seconds
        self.samples: dict[tuple[str, int], Sample] = {}
        if path is None:
            return
        text = path.read_text() if path.exists() else ""
        lines = text.splitlines()
        if text and not text.endswith("\n"):
            # The line being written when the run was stopped: cut off, so what is appended next starts a line.
            lines = lines[:-1]
            path.write_text("".join(line + "\n" for line in lines))
        header = json.loads(lines[0]) if lines else None
        if header is not None and header.get("plan") == plan:
            for line in lines[1:]:
                record = json.loads(line)
                if "overhead_s" in record:
                    self.overhead, self.dispatch = float(record["overhead_s"]), float(record["dispatch_s"])
                elif "fusion_rules" in record:
                    self.rules = FusionRules.from_dict(record["fusion_rules"])
                elif "network" in record:
                    self.networks[int(record["network"])] = float(record["measured_s"])
                else:
                    sample = Sample.from_dict(record)
                    self.samples[(sample.kernel_type, sample.index)] = sample
            if note is not None and (self.overhead is not None or self.samples):
                note(f"resuming from {path}: {len(self.samples)} samples already timed")
            return
        if header is not None and note is not None:
            note(f"{path} is from another calibration run (not {plan}); starting over")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"journal": "lwprof-calibration-samples", "plan": plan}) + "\n")

    def _append(self, record: dict[str, Any]) -> None:
        if self.path is not None:
            with self.path.open("a") as handle:
                handle.write(json.dumps(record) + "\n")

    def add_network(self, index: int, seconds: float) -> None:
        self.networks[index] = seconds
        self._append({"network": index, "measured_s": seconds})

    def set_rules(self, rules: FusionRules) -> None:
        self.rules = rules
        self._append({"fusion_rules": rules.to_dict()})

    def measure_overhead(self, backend: str, settings: "RunSettings") -> None:
        if self.overhead is None:
            self.overhead, self.dispatch = overhead_s(backend, settings)
            self._append({"overhead_s": self.overhead, "dispatch_s": self.dispatch})

    def add(self, sample: Sample) -> None:
        self.samples[(sample.kernel_type, sample.index)] = sample
        self._append(sample.to_dict())


def whole_kernels(kernel_type: str, seed: int, rules: FusionRules | None) -> Iterator[tuple[Any, tuple[int, ...], Any]]:
    """``kernel_type``'s draws that are one kernel of that type under
    ``rules``, as (module, input shape, kernel); a draw the runtime would
    split (a convolution with a hard-swish it runs apart) is passed over."""
    from lwprof.counting.engine import profile_module

    passed_over = 0
    for module, shape in configurations(kernel_type, seed):
        kernels = decompose(profile_module(module, shape), rules)
        if [k.type for k in kernels] == [kernel_type]:
            passed_over = 0
            yield module, shape, kernels[0]
            continue
        passed_over += 1
        if passed_over > 200:  # a sampler no draw of which the rules leave whole
            raise LwprofError(f"the {kernel_type} sampler draws no single {kernel_type} kernel under these fusion "
                              f"rules (last: {[k.type for k in kernels]})")


def collect(backend: str, settings: "RunSettings", wanted: dict[str, range], journal: Journal, seed: int = 0,
            progress: Callable[[str, Sample | None], None] | None = None, rules: FusionRules | None = None,
            deadline: float | None = None) -> list[Sample]:
    """Time the samples ``wanted`` (kernel type -> sample indices) that
    ``journal`` does not hold yet, one of each type in turn, and return every
    wanted sample timed; the ``index``-th sample of a type is its
    ``index``-th whole kernel (:func:`whole_kernels`). Past ``deadline``
    (``time.monotonic()``) nothing more is timed: every type has about as
    many samples as the others."""
    journal.measure_overhead(backend, settings)
    overhead = journal.overhead
    assert overhead is not None
    streams = {kernel_type: whole_kernels(kernel_type, seed, rules) for kernel_type in wanted}
    result: list[Sample] = []
    for index in range(max((max(r, default=-1) for r in wanted.values()), default=-1) + 1):
        for kernel_type, indices in wanted.items():
            if index > max(indices, default=-1):
                continue
            module, shape, kernel = next(streams[kernel_type])
            if index not in indices:
                continue
            sample = journal.samples.get((kernel_type, index))
            if sample is None:
                if deadline is not None and time.monotonic() > deadline:
                    return result
                measured = time_module(module, shape, backend, settings, f"lwprof-{kernel_type}-{index}")
                # A kernel faster than the per-call estimate keeps a floor of 5% of what was timed, never zero.
                sample = Sample(kernel_type, index, kernel.vector(), max(measured - overhead, 0.05 * measured), measured)
                journal.add(sample)
            result.append(sample)
            if progress is not None:
                progress(kernel_type, sample)
    return result


def cross_validated_errors(kind: str, group: list[Sample], folds: int = 5, seed: int = 0) -> list[float]:
    """|predicted / measured - 1| of each sample of one type, predicted by a
    ``kind`` regressor fitted without its fold; measured end to end, so a
    kernel's error is what it would add to a one-kernel model's."""
    order = list(range(len(group)))
    random.Random(seed).shuffle(order)
    errors = []
    for fold in range(folds):
        held = set(order[fold::folds])
        trained = [s for i, s in enumerate(group) if i not in held]
        if not trained or not held:
            continue
        model = fit_regressor(kind, FEATURES, [s.features for s in trained], [s.seconds for s in trained],
                              [s.measured_s for s in trained])
        # What the one-kernel model paid once (its per-call overhead) is measured_s - seconds.
        errors += [abs((model.predict(group[i].features) + group[i].measured_s - group[i].seconds)
                       / group[i].measured_s - 1) for i in sorted(held)]
    return errors


def fit(samples: list[Sample], seed: int = 0) -> tuple[dict[str, Any], dict[str, Any]]:
    """Per kernel type, the regressor kind with the smaller median
    cross-validated error, fitted on all its samples, and the figures that
    chose it (median and 90th percentile error of each kind)."""
    by_type: dict[str, list[Sample]] = {}
    for sample in samples:
        by_type.setdefault(sample.kernel_type, []).append(sample)
    regressors: dict[str, Any] = {}
    validation: dict[str, Any] = {}
    for kernel_type, group in by_type.items():
        figures: dict[str, Any] = {}
        for kind in regressor_kinds():
            errors = sorted(cross_validated_errors(kind, group, seed=seed)) if len(group) >= 5 else []
            if errors:
                figures[kind] = {"median_relative_error": statistics.median(errors),
                                 "p90_relative_error": errors[min(len(errors) - 1, int(0.9 * len(errors)))]}
        chosen = min(figures, key=lambda kind: figures[kind]["median_relative_error"]) if figures else "linear"
        regressors[kernel_type] = fit_regressor(chosen, FEATURES, [s.features for s in group], [s.seconds for s in group],
                                                [s.measured_s for s in group])
        validation[kernel_type] = {"samples": len(group), "regressor": chosen, **figures.get(chosen, {}),
                                   "kinds": figures}
    return regressors, validation


def needs_more(validation: dict[str, Any], threshold: float = 0.10) -> list[str]:
    """Adaptive sampling: the kernel types whose chosen regressor's median
    cross-validated error is above ``threshold``."""
    return [kernel_type for kernel_type, figures in validation.items()
            if figures.get("median_relative_error", 0.0) > threshold]


def time_networks(backend: str, settings: "RunSettings", count: int, journal: Journal, seed: int = 0,
                  progress: Callable[[int], None] | None = None) -> list[tuple[Any, tuple[int, ...], float]]:
    """``count`` synthetic networks (:mod:`lwprof.predict.networks`), each
    timed end to end: (module, input shape, seconds), journaled as timed."""
    from lwprof.predict.networks import synthetic_network

    rng = random.Random(f"{seed}:networks")
    result = []
    for index in range(count):
        module, shape = synthetic_network(rng)
        seconds = journal.networks.get(index)
        if seconds is None:
            seconds = time_module(module, shape, backend, settings, f"lwprof-network-{index}")
            journal.add_network(index, seconds)
        result.append((module, shape, seconds))
        if progress is not None:
            progress(index)
    return result


def fit_in_context(calibration: Any, networks: list[tuple[Any, tuple[int, ...], float]]) -> Any:
    """The :class:`~lwprof.predict.networks.Context` that maps ``calibration``'s
    kernels alone onto the networks' times, with its leave-one-out error."""
    from lwprof.counting.engine import profile_module
    from lwprof.predict.networks import CONV_TYPES, RIDGES, Context, fit_context

    parts, measured = [], []
    for module, shape, seconds in networks:
        prediction = calibration.predict(profile_module(module, shape), in_context=False)
        timed = [(k.type, s) for k, s in zip(prediction.kernels, prediction.seconds) if s is not None]
        parts.append((sum(s for t, s in timed if t in CONV_TYPES), sum(s for t, s in timed if t not in CONV_TYPES),
                      len(timed)))
        measured.append(seconds)
    once = calibration.overhead_s
    alone = [abs((once + conv + other) / m - 1) for (conv, other, _), m in zip(parts, measured)]

    def leave_one_out(ridge: float) -> float:
        errors = []
        for index in range(len(parts)):
            rest = [i for i in range(len(parts)) if i != index]
            conv, other, per_kernel = fit_context([parts[i] for i in rest], [measured[i] for i in rest], once, ridge)
            guess = once + conv * parts[index][0] + other * parts[index][1] + per_kernel * parts[index][2]
            errors.append(abs(guess / measured[index] - 1))
        return statistics.median(errors)

    error_alone = statistics.median(alone)
    held_out = {ridge: leave_one_out(ridge) for ridge in RIDGES} if len(parts) > 3 else {}
    ridge = min(held_out, key=held_out.__getitem__) if held_out else 0.0
    error_in_context = held_out.get(ridge)
    # Applied only when it predicts networks it did not see better than the kernels alone do.
    conv, other, per_kernel = (fit_context(parts, measured, once, ridge)
                               if error_in_context is not None and error_in_context < error_alone else (1.0, 1.0, 0.0))
    return Context(conv, other, per_kernel, len(parts), error_alone, error_in_context,
                   [{"input_shape": list(shape), "measured_s": seconds, "conv_alone_s": p[0], "other_alone_s": p[1],
                     "kernels": p[2]} for (_, shape, seconds), p in zip(networks, parts)])
