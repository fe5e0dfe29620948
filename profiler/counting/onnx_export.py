"""Export a PyTorch model to ONNX, and name every ONNX node by its PyTorch layer.

Exporter: the TorchScript-based one (``torch.onnx.export(..., dynamo=False)``),
chosen over the dynamo exporter (torch 2.13, onnxscript 0.7) because

- its node *names* carry the module scope (``/features/features.0/conv/Conv``),
  and ONNX Runtime keeps node names through its graph optimizer (a
  ``FusedConv`` keeps the name of the ``Conv`` it absorbed; fusions it creates
  are named ``<original name>/<Fusion>/``), so the ORT profiler's node names
  map back to layers. The dynamo exporter names nodes ``node_Conv_810`` and
  keeps the module path only in ``metadata_props``
  (``pkg.torch.onnx.name_scopes``), which ORT drops from the optimized model;
- with ``training=TrainingMode.PRESERVE`` on a model in eval mode it keeps
  each ``BatchNormalization`` as a node of its own module, so the exported
  graph mirrors the eager forward op for op and fusion stays a separate view
  (lwprof's fused column, ORT's optimized graph). The dynamo exporter either
  folds BatchNorm into the convolution and labels the merged node with the
  BatchNorm's scope (``optimize=True``: the convolution's MACs would land on
  ``features.0.bn``), or leaves ``Shape/Expand/CastLike`` subgraphs that
  materialise zero biases (``optimize=False``);
- it exports all 44 zoo models, 0.3-5 s each on 2 cores (the dynamo exporter
  exports them all too, in 2.5-12 s each).

It is deprecated upstream; if a later torch removes it, :func:`export_onnx`
fails with one clear line and the naming below still reads dynamo exports
through their ``name_scopes`` metadata.

Names: every exported node is annotated with its layer by
:func:`lwprof.counting.onnx_scopes.annotate`.

Caching. An export is a function of (model, input shape, opset, torch
version): :func:`export_cache_key` names that tuple, and the file records it
in its model ``metadata_props`` (:func:`export_info`), so a cached file can be
checked before reuse.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

from lwprof.core.errors import LwprofError
from lwprof.core.modules import eval_mode
from lwprof.core.text import one_line
from lwprof.counting.onnx_scopes import LAYER_NAMES_VERSION, annotate

if TYPE_CHECKING:
    import onnx
    from torch import nn

DEFAULT_OPSET = 17  # LayerNormalization and HardSwish are single ops from 17 on
EXPORTER = "torchscript"
INPUT_NAME = "input"
OUTPUT_NAME = "output"




# ---------------------------------------------------------------------------
# Export

@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Keep the TorchScript exporter off stdout, where results go.

    Its logging context tests the *function* ``_jit_is_onnx_log_enabled``
    for truth rather than calling it (torch 2.13), so logging is always on
    during an export, and a failed export dumps the whole TorchScript graph to
    C++ ``std::cout``. The one-line reason is all lwprof reports, so the
    Python-side dump is dropped and the C++ log goes to stderr.
    """
    import torch

    c_module = torch._C
    original = getattr(c_module, "_jit_onnx_log", None)
    set_stream = getattr(c_module, "_jit_set_onnx_log_output_stream", None)
    if set_stream is not None:
        set_stream("stderr")
    if original is not None:
        c_module._jit_onnx_log = lambda *args: None
    try:
        yield
    finally:
        if original is not None:
            c_module._jit_onnx_log = original



def export_cache_key(model_name: str, input_shape: Sequence[int], opset: int = DEFAULT_OPSET) -> str:
    """File-name-safe key of one export: ``mobilenet_v2_100-1x3x224x224-opset17-torch2.13.0``."""
    import torch

    shape = "x".join(str(int(d)) for d in input_shape)
    torch_version = re.sub(r"[^0-9A-Za-z.]+", "_", torch.__version__)
    return f"{model_name}-{shape}-opset{opset}-torch{torch_version}"


def export_info(model_or_path: "onnx.ModelProto | str | Path") -> dict[str, str]:
    """The ``lwprof.*`` model metadata an export wrote (empty for other files)."""
    import onnx

    model = model_or_path
    if not isinstance(model_or_path, onnx.ModelProto):
        model = onnx.load(str(model_or_path), load_external_data=False)
    return {p.key.removeprefix("lwprof."): p.value for p in model.metadata_props if p.key.startswith("lwprof.")}


def export_onnx(
    model: "nn.Module | str",
    input_shape: Sequence[int] | None,
    path: str | Path,
    opset: int = DEFAULT_OPSET,
) -> Path:
    """Export ``model`` (a module or a zoo name) to ``path`` on one random input.

    Eval mode and no grad during the export; the module's training flags are
    restored afterwards. ``input_shape`` defaults to the zoo entry's input for
    a zoo name. Every node gets its PyTorch layer name in its metadata.
    """
    import onnx
    import torch

    if isinstance(model, str):
        from lwprof.models import create_model, get_model_info

        info = get_model_info(model)
        name, module = info.name, create_model(info.name)
        input_shape = input_shape or info.input_shape
    else:
        name, module = type(model).__name__, model
    if not input_shape:
        raise LwprofError(f"cannot export {name}: no input shape given")
    if any(int(d) <= 0 for d in input_shape):
        raise LwprofError(f"cannot export {name}: input shape {list(input_shape)} must be positive integers")
    shape = tuple(int(d) for d in input_shape)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    first_param = next(iter(module.parameters()), None)
    dtype = first_param.dtype if first_param is not None and first_param.is_floating_point() else torch.float32
    device = first_param.device if first_param is not None else torch.device("cpu")
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=generator).to(device=device, dtype=dtype)

    try:
        with eval_mode(module.modules()), torch.no_grad(), warnings.catch_warnings(), _quiet_exporter():
            warnings.simplefilter("ignore")  # the exporter's deprecation notice
            torch.onnx.export(
                module,
                (x,),
                str(path),
                dynamo=False,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                # Keep BatchNorm nodes (EVAL would fold them into the convs):
                # the exported graph mirrors the eager forward.
                training=torch.onnx.TrainingMode.PRESERVE,
                do_constant_folding=True,
            )
    except Exception as exc:
        raise LwprofError(
            f"ONNX export of {name} (input {'x'.join(map(str, shape))}, opset {opset}) failed: {one_line(exc)}"
        ) from None

    exported = onnx.load(str(path))
    annotate(exported, module)
    onnx.helper.set_model_props(
        exported,
        {
            "lwprof.model": name,
            "lwprof.input_shape": "x".join(map(str, shape)),
            "lwprof.opset": str(opset),
            "lwprof.torch": torch.__version__,
            "lwprof.exporter": EXPORTER,
            "lwprof.layer_names": LAYER_NAMES_VERSION,
        },
    )
    onnx.save(exported, str(path))
    return path


