"""What XNNPACK was given and what it ran: the delegate's node list, and the
match between its runtime operators and those nodes.

ExecuTorch's XNNPACK delegate serializes a partition of the graph as an
``XNNGraph`` flatbuffer (``schema.fbs`` in executorch's XNNPACK package):
one ``XNode`` per XNNPACK operator it asks for, each with the debug handle
of the graph node it came from (65535 for nodes the delegate inserted, such
as the NCHW/NHWC transposes). At run time XNNPACK creates one operator per
node in that order, except where its own subgraph optimizer fuses a node
into its neighbour (a clamp into the convolution before it) or drops one (a
reshape that moves no data), and it profiles operators under names of its
own (``Convolution (NHWC, F32) IGEMM #3``, a 1x1 convolution becomes
``Fully Connected``). The delegate records no map from those names to debug
handles, so :func:`align` matches the two ordered lists: an edit-distance
alignment where an operator may only match a node of a type it can come
from (:data:`RUNTIME_OPERATORS`).

The flatbuffer is read with the ``flatbuffers`` runtime and field slots
from the schema; the union's member order (the type codes) is read from the
schema file executorch ships, so a new node type in a later executorch
shifts nothing here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

# XNNPACK's runtime operator name (before " (" and " #") -> the XNode types it can come from.
# Names not listed match the XNode type of the same name without spaces (Add, Clamp, HardSwish, ...).
RUNTIME_OPERATORS: dict[str, tuple[str, ...]] = {
    "Convolution": ("XNNConv2d", "XNNDepthwiseConv2d"),
    "Fully Connected": ("XNNFullyConnected", "XNNConv2d"),  # a 1x1 convolution on NHWC data
    "Deconvolution": ("XNNConvTranspose2d",),
    "Mean": ("XNNGlobalAvgPooling2d",),
    "Global Average Pooling": ("XNNGlobalAvgPooling2d",),
    "Average Pooling": ("XNNAvgPooling2d",),
    "Max Pooling": ("XNNMaxPooling2d",),
    "Argmax Pooling": ("XNNArgMaxPooling2d",),
    "Transpose": ("XNNStaticTranspose",),
    "Static Reshape": ("XNNStaticReshape",),
    "Copy": ("XNNCopy", "XNNStaticReshape", "XNNStaticSlice", "XNNConcatenate2", "XNNConcatenate3",
             "XNNConcatenate4", "XNNConcatenate5"),
    "Concatenate": ("XNNConcatenate2", "XNNConcatenate3", "XNNConcatenate4", "XNNConcatenate5"),
    "Slice": ("XNNStaticSlice",),
    "Constant Pad": ("XNNStaticConstantPad",),
    "Resize Bilinear": ("XNNStaticResizeBilinear2D",),
    "Divide": ("XNNDiv",),
    "Scaled Dot Product Attention": ("XNNScaledDotProductAttention",),
    # What XNNPACK 1.5's profiler calls an int8 unary operator it has no name for (an int8 HardSwish).
    "Invalid Unary Op": ("XNNHardswish", "XNNSigmoid", "XNNTanh", "XNNELU", "XNNLeakyReLU", "XNNGelu", "XNNNegate",
                         "XNNAbs", "XNNSquare", "XNNSquareRoot", "XNNReciprocalSquareRoot", "XNNExp", "XNNLog", "XNNSin",
                         "XNNCos", "XNNFloor", "XNNCeiling"),
}
# Runtime operators that only move data between layouts: a row of their own, named after a neighbour.
LAYOUT_OPERATORS = frozenset({"Transpose", "Copy", "Static Reshape", "Convert"})
# XNodes that move data without computing: the delegate inserts them (NCHW/NHWC), they compute no layer.
DATA_MOVEMENT = frozenset({"XNNStaticTranspose", "XNNStaticReshape", "XNNCopy", "XNNConvert"})


@dataclass(frozen=True)
class XNode:
    """One node of a delegate's XNNGraph."""

    type: str  # the schema's union member: XNNConv2d, XNNStaticTranspose, ...
    debug_handle: int
    fused_clamp: bool  # an activation folded into its output range at export


def operator_head(name: str) -> str:
    """``Convolution (NHWC, F32) IGEMM #3`` -> ``Convolution``."""
    return re.split(r" \(| #", name, maxsplit=1)[0].strip()


def operator_kind(name: str) -> str:
    """A runtime operator's name without its instance number: the op of a timing row."""
    return re.sub(r" #\d+$", "", name.strip())


def can_come_from(operator: str, node_type: str) -> bool:
    head = operator_head(operator)
    listed = RUNTIME_OPERATORS.get(head)
    if listed is not None:
        return node_type in listed
    return node_type.removeprefix("XNN").lower() == head.replace(" ", "").lower()


def align(operators: Sequence[str], nodes: Sequence[XNode]) -> list[int | None]:
    """For each runtime operator (in execution order), the index of the node
    it ran, or None for an operator XNNPACK added at run time. Nodes left
    unmatched were fused into a neighbour or dropped by XNNPACK. The
    alignment with the fewest unmatched entries on both sides wins; among
    equals, the one that matches earlier."""
    n, m = len(operators), len(nodes)
    # cost[i][j]: fewest unmatched entries aligning operators[i:] with nodes[j:].
    cost = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n, -1, -1):
        row, below = cost[i], cost[i + 1] if i < n else None
        for j in range(m, -1, -1):
            if i == n:
                row[j] = m - j
                continue
            if j == m:
                row[j] = n - i
                continue
            best = min(below[j], row[j + 1]) + 1
            if below[j + 1] < best and can_come_from(operators[i], nodes[j].type):
                best = below[j + 1]
            row[j] = best
    matched: list[int | None] = []
    i = j = 0
    while i < n:
        if j < m and can_come_from(operators[i], nodes[j].type) and cost[i][j] == cost[i + 1][j + 1]:
            matched.append(j)
            i, j = i + 1, j + 1
        elif j < m and cost[i][j] == cost[i][j + 1] + 1:
            j += 1  # this node ran inside a neighbour's operator
        else:
            matched.append(None)
            i += 1
    return matched


def xnnpack_nodes(processed_bytes: bytes) -> list[XNode]:
    """The XNodes of a delegate's processed bytes, in the order XNNPACK creates them."""
    import flatbuffers
    from flatbuffers import number_types
    from flatbuffers.table import Table

    header = _header(processed_bytes)
    buffer = bytearray(processed_bytes[header[0]:header[0] + header[1]])
    root = Table(buffer, flatbuffers.encode.Get(number_types.UOffsetTFlags.packer_type, buffer, 0))
    members = _union_members()
    nodes: list[XNode] = []
    vector_slot = root.Offset(_slot(1))  # XNNGraph.xnodes
    if not vector_slot:
        return nodes
    start, count = root.Vector(vector_slot), root.VectorLen(vector_slot)
    for index in range(count):
        node = Table(root.Bytes, root.Indirect(start + 4 * index))
        type_code = _scalar(node, 0, number_types.Uint8Flags)  # the union's type field comes first
        handle = _scalar(node, 2, number_types.Uint32Flags)
        name = members[type_code - 1] if 0 < type_code <= len(members) else f"XNode type {type_code}"
        nodes.append(XNode(name, handle, bool(node.Offset(_slot(3)))))
    return nodes


def _slot(field_index: int) -> int:
    """A table field's vtable offset (a union takes two fields: its type, then its value)."""
    return 4 + 2 * field_index


def _scalar(table: object, field_index: int, flags: object) -> int:
    offset = table.Offset(_slot(field_index))  # type: ignore[attr-defined]
    return table.Get(flags, offset + table.Pos) if offset else 0  # type: ignore[attr-defined]


def _header(processed_bytes: bytes) -> tuple[int, int]:
    """(flatbuffer offset, flatbuffer size) from the delegate's header (``XH00``)."""
    from executorch.backends.xnnpack.serialization.xnnpack_graph_serialize import XNNHeader

    header = XNNHeader.from_bytes(bytes(processed_bytes[:XNNHeader.EXPECTED_LENGTH]))
    return header.flatbuffer_offset, header.flatbuffer_size


_members: list[str] = []


def _union_members() -> list[str]:
    """``XNodeUnion``'s members in schema order: member k has type code k+1."""
    if not _members:
        from executorch.backends.xnnpack.serialization import xnnpack_graph_serialize

        schema = (Path(xnnpack_graph_serialize.__file__).parent / "schema.fbs").read_text()
        body = re.search(r"union\s+XNodeUnion\s*\{(.*?)\}", schema, re.S)
        if body is None:
            raise ValueError("executorch's XNNPACK schema.fbs has no XNodeUnion")
        for line in body.group(1).splitlines():
            member = line.split("//")[0].strip().rstrip(",").split(":")[0].strip()
            if member:
                _members.append(member)
    return _members
