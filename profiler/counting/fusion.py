"""The fused (deployment) memory view: which ops disappear into their producer.

Deployment runtimes (ONNX Runtime, TensorRT, oneDNN) fold BatchNorm into the
preceding convolution and run activations and the residual add as the
convolution's epilogue, so those intermediate tensors never travel through
memory. The rule, applied in execution order:

1. A *chain* starts at every convolution or linear layer (``aten.convolution``,
   ``aten.addmm``, ``aten.mm``; in ONNX graphs Conv, Gemm, MatMul and ORT's
   fused variants, see CHAIN_HEADS).
2. A BatchNorm directly after the chain's head joins the chain: its weights
   are folded into the convolution offline, so its fused traffic is 0.
3. An activation (ReLU, ReLU6, hard-swish, hard-sigmoid, sigmoid, SiLU, GELU,
   ...) whose only input is the chain's output joins it: fused traffic 0.
4. One residual ``add`` of two equally shaped tensors, one of which is the
   chain's output, joins the chain: it still reads the other (shortcut)
   tensor, so its fused traffic is that read alone.

In every case the chain's output must have no other consumer, else it has to
be written to memory anyway and nothing is fused. The producer's own traffic
is unchanged: its write of the output now stands for the chain's final output,
which has the same size. Hence, exactly,
``memory_bytes_fused = memory_bytes - sum(traffic removed from fused ops)``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from lwprof.core.records import OpRecord
from lwprof.counting import ops as op_table

# Op names of both counts: aten ops (lwprof.counting.engine) and ONNX op types (lwprof.counting.onnx_count).
CHAIN_HEADS = frozenset(
    {
        "aten.convolution",
        "aten.addmm",
        "aten.mm",
        "Conv",
        "ConvTranspose",
        "Gemm",
        "MatMul",
        "com.microsoft.FusedConv",
        "com.microsoft.FusedGemm",
        "com.microsoft.FusedMatMul",
    }
)
FOLDABLE_NORMS = frozenset(
    {"aten.native_batch_norm", "aten._native_batch_norm_legit_no_training", "BatchNormalization"}
)
NOT_FUSED_ACTIVATIONS = frozenset({"aten._softmax", "aten._log_softmax", "Softmax", "LogSoftmax"})
RESIDUAL_ADDS = frozenset({"aten.add", "Add"})


@dataclass
class _Chain:
    head: int
    accepts_norm: bool = True
    has_add: bool = False


def apply_fusion(records: list[OpRecord], inputs_from: list[list[int | None]]) -> None:
    """Set ``memory_bytes_fused`` and ``fused_into`` on ``records`` in place."""
    consumers: Counter = Counter(src for sources in inputs_from for src in sources if src is not None)
    chains: dict[int, _Chain] = {}  # keyed by the op whose output ends the chain

    def sole_chain_output(source: int | None) -> bool:
        return source is not None and source in chains and consumers[source] == 1

    for rec, sources in zip(records, inputs_from):
        if rec.op in CHAIN_HEADS:
            chains[rec.index] = _Chain(head=rec.index)
            continue
        if not sources:
            continue
        source = sources[0]
        fused_bytes: int | None = None
        if rec.op in FOLDABLE_NORMS and sole_chain_output(source) and chains[source].accepts_norm:
            fused_bytes = 0
        elif (
            rec.op_class == op_table.ACTIVATION
            and rec.op not in NOT_FUSED_ACTIVATIONS
            and len(sources) == 1
            and sole_chain_output(source)
        ):
            fused_bytes = 0
        elif (
            rec.op in RESIDUAL_ADDS
            and len(sources) == 2
            and len(set(rec.input_shapes)) == 1
            and rec.input_shapes[0] == rec.output_shapes[0]
        ):
            candidates = [s for s in sources if sole_chain_output(s) and not chains[s].has_add]
            if candidates and sources[0] != sources[1]:
                source = max(candidates)  # the branch computed last is the one fused
                fused_bytes = rec.bytes_read // 2  # the shortcut, same shape and dtype
        if fused_bytes is None:
            continue
        chain = chains.pop(source)
        chain.accepts_norm = False
        chain.has_add = chain.has_add or rec.op in RESIDUAL_ADDS
        rec.memory_bytes_fused = fused_bytes
        rec.fused_into = chain.head
        chains[rec.index] = chain
