"""Per-layer timing records shared by the backends.

A backend's per-layer measurement is a list of :class:`LayerTiming` rows in
execution order. A row names the analytic layer it timed (the same names as
``lwprof profile --analytic``), or, for a runtime node that fused several
layers (ONNX Runtime's Conv+BatchNorm+ReLU), the first of them with
``covers`` listing all. Samples are seconds per forward pass, one per timed
run, so statistics come from :class:`lwprof.runtime.measure.Stats`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from lwprof.core.stats import Stats


@dataclass(frozen=True)
class LayerTiming:
    layer: str
    samples_s: tuple[float, ...]
    covers: tuple[str, ...] = ()
    ops: tuple[str, ...] = ()

    @cached_property
    def stats(self) -> Stats:
        return Stats.of(self.samples_s)

    @property
    def layers(self) -> tuple[str, ...]:
        """The analytic layers this row's time belongs to."""
        return self.covers or (self.layer,)
