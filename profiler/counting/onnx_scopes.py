"""Every ONNX node named by its PyTorch layer, from scope names or from stored metadata.

Names. An exported node's *module path* is the innermost module that ran it
(``features.0.conv``); its *layer name* is the row name ``lwprof.analyze``
gives it: the path for a leaf module, ``path (op)`` for a functional op of a
container (``features.3 (add)``, the op named as eager PyTorch names it, see
:data:`EAGER_OP_NAMES`), ``<root> (op)`` for ops of the model's
own forward. :func:`export_onnx` resolves these against the real module tree
and stores them on each node (``metadata_props`` keys :data:`LAYER_KEY`,
:data:`MODULE_PATH_KEY`, :data:`MODULE_TYPE_KEY`); for other files
:func:`node_scopes` derives them from the scope names alone, and for an ORT-
optimized graph through the graph it was optimized from.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable


if TYPE_CHECKING:
    import onnx
    from torch import nn

LAYER_KEY = "lwprof.layer"
MODULE_PATH_KEY = "lwprof.module_path"
MODULE_TYPE_KEY = "lwprof.module_type"
DYNAMO_SCOPES_KEY = "pkg.torch.onnx.name_scopes"
# Raised whenever annotate() names layers differently, so cached exports are annotated again.
LAYER_NAMES_VERSION = "2"

ROOT = "<root>"

# How eager PyTorch names the op that an ONNX op stands for, so a container's
# functional op gets the same row name from both counts ("features.3 (add)").
# Op types not listed are named by their lower-cased type ("split").
EAGER_OP_NAMES: dict[str, str] = {
    "Add": "add",
    "Sub": "sub",
    "Mul": "mul",
    "Div": "div",
    "Concat": "cat",
    "Transpose": "clone",
    "MatMul": "bmm",
    "FusedMatMul": "bmm",
    "FusedConv": "convolution",
    "FusedGemm": "addmm",
    "QuickGelu": "silu",
    "SkipLayerNormalization": "native_layer_norm",
    "Softmax": "_softmax",
    "LogSoftmax": "_log_softmax",
    "ReduceMean": "mean",
    "ReduceSum": "sum",
    "GlobalAveragePool": "mean",
    "AveragePool": "avg_pool2d",
    "MaxPool": "max_pool2d_with_indices",
    "BatchNormalization": "native_batch_norm",
    "LayerNormalization": "native_layer_norm",
    "Conv": "convolution",
    "Gemm": "addmm",
    "Clip": "hardtanh",
    "Relu": "relu",
    "Sigmoid": "sigmoid",
    "HardSigmoid": "hardsigmoid",
    "HardSwish": "hardswish",
}


def eager_op_name(op_type: str) -> str:
    return EAGER_OP_NAMES.get(op_type, op_type.lower())


def annotate(model: "onnx.ModelProto", module: "nn.Module") -> None:
    """Store each node's module path, module type and layer name, resolved
    against the real module tree (exact where scope names are ambiguous)."""
    from torch import nn

    modules = dict(module.named_modules())
    leaves = {path for path, m in modules.items() if not any(True for _ in m.children())}
    children: dict[str, dict[str, str]] = {}
    for path in modules:
        if path:
            parent = path.rpartition(".")[0]
            children.setdefault(parent, {})[_scope_component(path)] = path
            # A ModuleList or ModuleDict is never called, so it has no scope of its own: its
            # children are scoped directly under the module that iterates it
            # (/features/mixed_5a/branches.0/...).
            while parent and isinstance(modules[parent], (nn.ModuleList, nn.ModuleDict)):
                parent = parent.rpartition(".")[0]
                children.setdefault(parent, {}).setdefault(_scope_component(path), path)

    def resolve(components: list[str]) -> str | None:
        path = ""
        for component in components:
            options = children.get(path, {})
            child = options.get(component) or options.get(_strip_call_suffix(component) or "")
            if child is None:
                return None
            path = child
        return path

    fallback = node_scopes(model)
    for node, guess in zip(model.graph.node, fallback):
        components = _scope_components(node.name)
        path = resolve(components) if components is not None else None
        if path is None:
            scope = guess
        else:
            scope = NodeScope(path, path in leaves, type(modules[path]).__name__)
        _set_metadata(node, LAYER_KEY, scope.layer_name(node.op_type))
        if not scope.row:  # a node no module ran (a de-duplicated initializer's Identity)
            _set_metadata(node, MODULE_PATH_KEY, scope.module_path)
            _set_metadata(node, MODULE_TYPE_KEY, scope.module_type)


def _set_metadata(node: Any, key: str, value: str) -> None:
    for prop in node.metadata_props:
        if prop.key == key:
            prop.value = value
            return
    node.metadata_props.add(key=key, value=value)


# ---------------------------------------------------------------------------
# Scope names -> module paths -> layer names


@dataclass(frozen=True)
class NodeScope:
    """Where a node ran: the module path ('' for the model itself), whether
    that module is a leaf, and its type when known. ``row`` names the row of a
    node no scope places (the node's own name)."""

    module_path: str
    leaf: bool
    module_type: str = ""
    row: str = ""

    def layer_name(self, op_type: str) -> str:
        if self.row:
            return self.row
        if self.leaf:
            return self.module_path or ROOT
        return f"{self.module_path or ROOT} ({eager_op_name(op_type)})"


def _scope_component(module_path: str) -> str:
    """How the TorchScript exporter names a module in a scope: from its last
    non-numeric path atom on (``features.0``, ``conv``, ``blocks.2.0``)."""
    atoms = module_path.split(".")
    for index in range(len(atoms) - 1, -1, -1):
        if not atoms[index].isdigit():
            return ".".join(atoms[index:])
    return module_path


_CALL_SUFFIX = re.compile(r"^(.+)_(\d+)$")


def _strip_call_suffix(component: str) -> str | None:
    """``shared_1`` -> ``shared``: the exporter's suffix for a module's second call."""
    match = _CALL_SUFFIX.match(component)
    return match.group(1) if match else None


def _scope_components(name: str) -> list[str] | None:
    """``/features/features.0/conv/Conv`` -> ``['features', 'features.0', 'conv']``;
    None for a name without a scope (``Identity_70``)."""
    if not name.startswith("/"):
        return None
    return [part for part in name.split("/")[1:-1] if part]


def _path_from_components(components: list[str]) -> str:
    # A component ends with the module's own attribute name ("features.0" is
    # child "0" of "features"), so the path is the last atoms joined.
    return ".".join(component.rsplit(".", 1)[-1] for component in components)


def _dynamo_module_path(node: Any) -> str | None:
    for prop in node.metadata_props:
        if prop.key == DYNAMO_SCOPES_KEY:
            try:
                scopes = ast.literal_eval(prop.value)
            except (ValueError, SyntaxError):
                return None
            # ['', 'features', 'features.0', 'features.0.conv', 'conv2d']: the
            # last entry names the op, the one before it the module.
            return scopes[-2] if len(scopes) >= 2 else ""
    return None


def _metadata(node: Any, key: str) -> str | None:
    for prop in node.metadata_props:
        if prop.key == key:
            return prop.value
    return None


def module_path_of(node: Any) -> str | None:
    """The module path a node's own name or metadata names, or None when it
    names none (an unnamed or runtime-created node)."""
    stored = _metadata(node, MODULE_PATH_KEY)
    if stored is not None:
        return stored
    dynamo = _dynamo_module_path(node)
    if dynamo is not None:
        return dynamo
    components = _scope_components(node.name)
    return _path_from_components(components) if components is not None else None


def layer_name_of(node: Any, containers: Iterable[str] | None = None) -> str:
    """The ``lwprof.analyze`` row name of an ONNX node.

    Exact for :func:`export_onnx` files (read from the node's metadata). For
    other files it is derived from the node's scope name: ``containers`` is
    the set of module paths that have child modules (see :func:`node_scopes`,
    which derives it from the whole graph); without it only the model itself
    counts as a container.
    """
    stored = _metadata(node, LAYER_KEY)
    if stored is not None:
        return stored
    path = module_path_of(node)
    if path is None:
        return node.name or node.op_type
    container_set = set(containers) if containers is not None else {""}
    return NodeScope(path, path not in container_set).layer_name(node.op_type)


def _containers(paths: Iterable[str]) -> set[str]:
    """Every proper ancestor of a path that ran ops (the model itself included)."""
    found: set[str] = set()
    for path in paths:
        if path:
            found.add("")
            atoms = path.split(".")
            found.update(".".join(atoms[:i]) for i in range(1, len(atoms)))
    return found


def _own_scopes(model: "onnx.ModelProto") -> list[NodeScope | None]:
    """Scopes named by each node itself (metadata or scope name), None where it names none."""
    nodes = list(model.graph.node)
    layers = [_metadata(node, LAYER_KEY) for node in nodes]
    if nodes and all(layer is not None for layer in layers):
        stored: list[NodeScope | None] = []
        for node, layer in zip(nodes, layers):
            path = _metadata(node, MODULE_PATH_KEY)
            kind = _metadata(node, MODULE_TYPE_KEY) or ""
            stored.append(NodeScope(path, layer == (path or ROOT), kind) if path is not None else None)
        return stored

    paths: list[str | None] = []
    for node in nodes:
        dynamo = _dynamo_module_path(node)
        if dynamo is not None:
            paths.append(dynamo)
            continue
        components = _scope_components(node.name)
        paths.append(_path_from_components(components) if components is not None else None)
    # A second call of a module is scoped "name_1": fold it into "name" when
    # "name" is a module the graph knows.
    known = {p for p in paths if p is not None}
    known |= _containers(known)

    def fold_calls(path: str) -> str:
        atoms = path.split(".")
        for i, atom in enumerate(atoms):
            base = _strip_call_suffix(atom)
            if base is not None and ".".join(atoms[:i] + [base]) in known:
                atoms[i] = base
        return ".".join(atoms)

    paths = [fold_calls(p) if p is not None else None for p in paths]
    containers = _containers(p for p in paths if p is not None)
    return [NodeScope(p, p not in containers) if p is not None else None for p in paths]


def node_scopes(model: "onnx.ModelProto", reference: "onnx.ModelProto | None" = None) -> list[NodeScope]:
    """The scope of every node of ``model``, in graph order.

    ``reference`` is the graph ``model`` was optimized from (ONNX Runtime keeps
    the names of nodes it keeps or fuses into, and names new ones after them):
    a node is then placed by, in order, its own name in the reference, the
    reference node its name extends (``.../qkv/MatMul/MatMulAddFusion``), the
    reference producer of its outputs, the nodes that consume its outputs, and
    the reference producer of its inputs. Without ``reference`` a node is
    placed by its own name or metadata only. A node placed nowhere is a row of
    its own, named after the node.
    """
    nodes = list(model.graph.node)
    if reference is None:
        return [scope or _own_row(node, i) for i, (node, scope) in enumerate(zip(nodes, _own_scopes(model)))]

    ref_nodes = list(reference.graph.node)
    ref_scopes = node_scopes(reference)
    by_name = {node.name: scope for node, scope in zip(ref_nodes, ref_scopes) if node.name and not scope.row}
    by_value = {output: scope for node, scope in zip(ref_nodes, ref_scopes) for output in node.output if not scope.row}
    own: list[NodeScope | None] = [by_name.get(node.name) if node.name else None for node in nodes]
    return _place(nodes, own, by_name, by_value)


def _place(
    nodes: list[Any],
    own: list[NodeScope | None],
    by_name: dict[str, NodeScope],
    by_value: dict[str, NodeScope],
) -> list[NodeScope]:
    consumers: dict[str, list[int]] = {}
    for index, node in enumerate(nodes):
        for name in node.input:
            consumers.setdefault(name, []).append(index)
    names_by_length = sorted(by_name, key=len, reverse=True)
    placed: list[NodeScope | None] = list(own)

    def by_prefix(name: str) -> NodeScope | None:
        for candidate in names_by_length:
            if name.startswith(candidate + "/") or name.startswith(candidate + "_"):
                return by_name[candidate]
        return None

    def resolve(index: int, visiting: set[int]) -> NodeScope | None:
        if placed[index] is not None:
            return placed[index]
        node = nodes[index]
        scope = by_prefix(node.name) if node.name and by_name else None
        scope = scope or next((by_value[o] for o in node.output if o in by_value), None)
        if scope is None and index not in visiting:
            visiting.add(index)
            for output in node.output:
                for consumer in consumers.get(output, []):
                    scope = resolve(consumer, visiting)
                    if scope is not None:
                        break
                if scope is not None:
                    break
        scope = scope or next((by_value[i] for i in node.input if i in by_value), None)
        if scope is not None:
            placed[index] = scope
        return scope

    return [resolve(i, set()) or _own_row(node, i) for i, node in enumerate(nodes)]


def _own_row(node: Any, index: int) -> NodeScope:
    """A node no scope places is a row of its own, named after the node."""
    return NodeScope("", True, row=node.name or f"{node.op_type}_{index}")
