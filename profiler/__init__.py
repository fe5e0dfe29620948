"""lwprof: a hardware-aware profiler for lightweight neural networks.

Importing this package is cheap on purpose: torch, onnxruntime and matplotlib
are imported only by the functions that need them, so ``lwprof --help`` and
``lwprof --version`` answer instantly.
"""

__version__ = "0.1.0"

__all__ = ["__version__", "analyze"]


def __getattr__(name):
    # Lazy: importing lwprof must not import torch.
    if name == "analyze":
        from lwprof.counting.analysis import analyze

        return analyze
    raise AttributeError(f"module 'lwprof' has no attribute {name!r}")
