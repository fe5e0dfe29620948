"""The C allocator's part in a latency: page faults per pass, and the tuned setting.

In a fresh process glibc's malloc serves every block of 128 KiB or more with
its own ``mmap`` and hands it back to the kernel on ``free``, so a network's
activations are page-faulted in again on every forward pass (on a 2-vCPU EPYC,
about 2,650 minor faults per mobilenet_v2 pass, 20-30% of its latency). A
long-running process whose history freed one large block behaves otherwise:
glibc then raises its mmap threshold and keeps activations in the heap. Which
of the two a user's process is depends on what it did before, so lwprof
measures the plain process by default, counts the faults, and times the tuned
allocator beside it when they are significant.

"Tuned" sets glibc's mmap threshold to 32 MiB (the largest it accepts on
64-bit) and its trim threshold to 64 MiB, which is what glibc's own dynamic
rule ends at after a 32 MiB block is freed. A deployment gets the same with
:data:`TUNED_ENVIRONMENT` in the process environment, or with another malloc
(jemalloc, tcmalloc) through ``LD_PRELOAD``.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass

from lwprof.core.errors import LwprofError

# What `--allocator` takes. auto: the plain process, plus the tuned allocator
# when the plain one page-faults significantly; default: the plain process
# only; tuned: the tuned allocator only; both: both, always.
ALLOCATOR_CHOICES = ("auto", "default", "tuned", "both")
DEFAULT, TUNED = "default", "tuned"

TUNED_MMAP_THRESHOLD_BYTES = 32 * 2**20
TUNED_TRIM_THRESHOLD_BYTES = 64 * 2**20
TUNED_ENVIRONMENT = {
    "MALLOC_MMAP_THRESHOLD_": str(TUNED_MMAP_THRESHOLD_BYTES),
    "MALLOC_TRIM_THRESHOLD_": str(TUNED_TRIM_THRESHOLD_BYTES),
}
# 100 faults re-map 400 KiB per pass; each costs a kernel entry and a zeroed
# page (a few microseconds), enough to show in a lightweight network's latency.
SIGNIFICANT_FAULTS_PER_PASS = 100.0

# Environment variables that change how the C allocator behaves; recorded with
# every measurement so a tuned environment is never mistaken for a plain one.
_ALLOCATOR_VARIABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_ARENA_MAX",
                        "GLIBC_TUNABLES", "LD_PRELOAD")

# glibc's mallopt parameter numbers (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def variants(mode: str) -> tuple[str, ...]:
    """The allocator settings timed first for ``mode``; ``auto`` may add
    :data:`TUNED` afterwards (see :func:`significant`)."""
    if mode not in ALLOCATOR_CHOICES:
        raise LwprofError(f"--allocator {mode}: expected one of {', '.join(ALLOCATOR_CHOICES)}")
    return {"auto": (DEFAULT,), "default": (DEFAULT,), "tuned": (TUNED,), "both": (DEFAULT, TUNED)}[mode]


def significant(faults_per_pass: float | None) -> bool:
    return faults_per_pass is not None and faults_per_pass >= SIGNIFICANT_FAULTS_PER_PASS


def tuning_unavailable() -> str | None:
    """Why the tuned allocator cannot be set here (None: it can)."""
    library, _ = platform.libc_ver()
    if library != "glibc":
        return f"the tuned allocator sets glibc's malloc, and this system's C library is {library or 'not glibc'}"
    return None


def apply_tuned() -> dict[str, object]:
    """Set the tuned allocator in this process (as :data:`TUNED_ENVIRONMENT`
    would at its start) and return what was set."""
    import ctypes

    reason = tuning_unavailable()
    if reason is not None:
        raise LwprofError(reason)
    libc = ctypes.CDLL(None)
    for parameter, value in ((_M_MMAP_THRESHOLD, TUNED_MMAP_THRESHOLD_BYTES), (_M_TRIM_THRESHOLD, TUNED_TRIM_THRESHOLD_BYTES)):
        if libc.mallopt(parameter, value) != 1:
            raise LwprofError(f"glibc refused mallopt({parameter}, {value})")
    return {
        "mmap_threshold_bytes": TUNED_MMAP_THRESHOLD_BYTES,
        "trim_threshold_bytes": TUNED_TRIM_THRESHOLD_BYTES,
        "set_with": "mallopt(M_MMAP_THRESHOLD), mallopt(M_TRIM_THRESHOLD)",
        "deployment_equivalent": deployment_hint(),
    }


def deployment_hint() -> str:
    return " ".join(f"{key}={value}" for key, value in TUNED_ENVIRONMENT.items())


def allocator_environment() -> dict[str, str]:
    """The allocator-related variables set in this process's environment."""
    return {key: os.environ[key] for key in _ALLOCATOR_VARIABLES if key in os.environ}


def minor_page_faults() -> int | None:
    """Minor page faults of this process so far, all threads (None where the
    platform does not count them)."""
    try:
        import resource
    except ImportError:
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


@dataclass
class FaultCounter:
    """Minor page faults between :meth:`start` and :meth:`stop`."""

    started: int | None = None
    counted: int | None = None

    def start(self) -> None:
        self.started = minor_page_faults()

    def stop(self) -> int | None:
        now = minor_page_faults()
        if self.started is not None and now is not None:
            self.counted = now - self.started
        return self.counted

    def per(self, passes: int) -> float | None:
        return self.counted / passes if self.counted is not None and passes else None
