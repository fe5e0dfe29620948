"""A resolved model SPEC, and how another process rebuilds the very same model."""

from __future__ import annotations

import contextlib
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

from lwprof.core.errors import LwprofError

if TYPE_CHECKING:
    from torch import nn

DEFAULT_INPUT_SHAPE: tuple[int, ...] = (1, 3, 224, 224)


@dataclass(frozen=True)
class LoadedModel:
    """A resolved SPEC: a PyTorch module (kind "torch") or an ONNX file (kind
    "onnx"); a backend's staging may also make a program of its own runtime
    (kind "executorch": ``program_path``, an ExecuTorch ``.pte``).

    ``recipe`` rebuilds the very same model in another process (a picklable
    call, such as :func:`load_model` with this SPEC): latency is measured in
    fresh worker processes, and a module does not travel between processes.
    """

    name: str
    kind: str
    module: nn.Module | None
    onnx_path: Path | None
    input_shape: tuple[int, ...]
    source: str
    # The element types of the file or module as it is: "int8" for a quantized ONNX file.
    precision: str = "fp32"
    program_path: Path | None = None
    recipe: Callable[[], "LoadedModel"] | None = field(default=None, compare=False, repr=False)

    def portable(self) -> "LoadedModel":
        """This model without its module, to send to another process."""
        return replace(self, module=None)

    def materialize(self) -> "LoadedModel":
        """This model with its module, rebuilt by ``recipe`` when it travelled without one."""
        if self.kind != "torch" or self.module is not None:
            return self
        if self.recipe is None:
            raise LwprofError(f"{self.name} has no module and no recipe to rebuild it")
        built = self.recipe()
        if built.module is None:
            raise LwprofError(f"rebuilding {self.name} gave no module")
        return replace(self, module=built.module)


@contextlib.contextmanager
def seeded(key: str) -> Iterator[None]:
    """Random initialisation seeded by ``key``, the caller's random state left
    as it was: every build of the same SPEC gets the same weights, in this
    process and in a worker process, so the torch module a worker times is the
    one whose ONNX export another worker runs, and an export cached by an
    earlier run is reused."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(zlib.crc32(key.encode()))
        yield
