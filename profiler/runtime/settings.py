"""What a run is: one settings object, built once by the command and passed down.

Device, threads, measurement budget, per-layer passes, cache folder, the
allocator choice, how many fresh processes time each figure, the precision
measured and how int8 is made travel together (into worker processes too, so
it is plain picklable data), and a run records :meth:`RunSettings.to_dict` with its results.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from lwprof.core.errors import LwprofError
from lwprof.runtime.allocator import variants
from lwprof.runtime.measure import Budget
from lwprof.runtime.precision import FP32, PRECISIONS, Int8Recipe


@dataclass(frozen=True)
class RunSettings:
    device: str = "cpu"
    threads: int = 1
    budget: Budget = field(default_factory=Budget)
    layer_runs: int = 0
    cache_dir: Path = Path(".")
    allocator: str = "auto"
    # Fresh worker processes per timed figure, their samples pooled: a plain
    # process's allocator state (and so its latency) differs between processes.
    processes: int = 1
    precision: str = FP32
    int8: Int8Recipe = field(default_factory=Int8Recipe)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise LwprofError(f"unknown precision '{self.precision}'; choose from {', '.join(PRECISIONS)}")
        if not isinstance(self.threads, int) or self.threads < 1:
            raise LwprofError(f"threads must be a positive integer, got {self.threads!r}")
        if not isinstance(self.processes, int) or self.processes < 1:
            raise LwprofError(f"processes must be a positive integer, got {self.processes!r}")
        if self.layer_runs < 0:
            raise LwprofError(f"layer runs must be 0 or more, got {self.layer_runs}")
        variants(self.allocator)  # raises on an unknown choice

    @classmethod
    def build(
        cls,
        *,
        device: str,
        threads: int | None = None,
        budget: Budget | None = None,
        layer_runs: int = 0,
        cache_dir: Path | None = None,
        allocator: str = "auto",
        processes: int = 1,
        int8: Int8Recipe | None = None,
    ) -> "RunSettings":
        """Defaults filled in: one thread per physical core, lwprof's cache folder."""
        from lwprof.runtime.environment import physical_cores
        from lwprof.runtime.export_cache import default_cache_dir

        return cls(
            device=device,
            threads=threads or physical_cores(),
            budget=budget or Budget(),
            layer_runs=layer_runs,
            cache_dir=Path(cache_dir) if cache_dir is not None else default_cache_dir(),
            allocator=allocator,
            processes=processes,
            int8=int8 or Int8Recipe(),
        )

    def but(self, **changes: Any) -> "RunSettings":
        """A copy with some settings changed."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["cache_dir"] = str(self.cache_dir)
        data["int8"] = self.int8.to_dict()
        return data


def budget_from_options(base: Budget | None = None, **options: Any) -> Budget:
    """``base`` (default: lwprof's budget) with the options the user gave
    (``None``: not given); a contradiction is one line for the user."""
    given = {key: value for key, value in options.items() if value is not None}
    try:
        return replace(base or Budget(), **given)
    except ValueError as exc:
        raise LwprofError(f"measurement budget: {exc}") from None
