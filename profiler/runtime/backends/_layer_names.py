"""Analytic row names for a compiled runtime's graph nodes, shared by the
backends that read a module stack from a graph (ExecuTorch, inductor)."""

from __future__ import annotations

from typing import Any


class LayerNamer:
    """A node's analytic row name from its module path and op: a leaf module's
    path, or ``path (op)`` for a container's own functional op (as
    :meth:`lwprof.counting.tracer.ModuleStack.layer_of` names them)."""

    def __init__(self, module: Any):
        self.leaf = {path: next(iter(sub.children()), None) is None for path, sub in module.named_modules()}

    def is_leaf(self, path: str) -> bool:
        return bool(self.leaf.get(path))

    def name(self, path: str, op: str) -> str:
        if path and self.is_leaf(path):
            return path
        return f"{path or '<root>'} ({op})"
