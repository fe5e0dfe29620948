"""torch's intra-op thread count for a stretch of work, and back afterwards."""

from __future__ import annotations

import contextlib
from typing import Iterator


@contextlib.contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """``torch.set_num_threads(count)`` inside, the caller's count after;
    ``None`` leaves it alone (on CUDA the CPU thread count is not the
    measurement's)."""
    if count is None:
        yield
        return
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
