"""`lwprof.runtime.loader`: every SPEC form, the user-package collision case, and the
one-line errors for specs that do not resolve. Every model here is built in
the test (tiny convs, tmp_path files); nothing is downloaded."""

import importlib
import sys
import textwrap
import types
from pathlib import Path

import pytest
import torch
from torch import nn

from lwprof.core.errors import LwprofError
from lwprof.models import UnknownModelError, get_model_info
from lwprof.runtime.loader import DEFAULT_INPUT_SHAPE, LoadedModel, load_model, parse_shape

NET_PY = """\
import torch.nn as nn


class Net(nn.Module):
    def __init__(self, width=4):
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3)

    def forward(self, x):
        return self.conv(x)


def build():
    return Net(width=8)


def needs_width(width):
    return Net(width)


def boom():
    raise ValueError("boom\\nsecond line of the message")


def not_a_model():
    return 5


model = Net(width=6)
number = 3
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        return torch.relu(self.conv(x))


@pytest.fixture
def forget_modules():
    """Undo what importing user code leaves in sys.modules under the given
    top-level names, so tests that each build a `models` package stay apart."""
    names: list[str] = []
    saved: dict[str, types.ModuleType] = {}

    def forget(*top_level: str) -> None:
        for name in top_level:
            names.append(name)
            saved.update({k: v for k, v in sys.modules.items() if k == name or k.startswith(name + ".")})

    yield forget
    for key in [k for k in sys.modules if any(k == n or k.startswith(n + ".") for n in names)]:
        del sys.modules[key]
    sys.modules.update(saved)


def one_line_error(spec: str, **kwargs) -> str:
    with pytest.raises(LwprofError) as caught:
        load_model(spec, **kwargs)
    message = str(caught.value)
    assert message and "\n" not in message, message
    return message


# ---------------------------------------------------------------- parse_shape


@pytest.mark.parametrize(
    "text, shape",
    [
        ("1,3,224,224", (1, 3, 224, 224)),
        ("1x3x224x224", (1, 3, 224, 224)),
        ("2X3X32X32", (2, 3, 32, 32)),
        (" 4, 3, 64, 48 ", (4, 3, 64, 48)),
        ("(1,3,8,8)", (1, 3, 8, 8)),
        ("[1, 16]", (1, 16)),
        ("7", (7,)),
    ],
)
def test_parse_shape_accepts_commas_and_x(text, shape):
    assert parse_shape(text) == shape


@pytest.mark.parametrize("text", ["", " ", "1,,3", "1,0,224", "1,-3,224", "a,b", "1.5,3", "1;3;224", "1,3,", "x"])
def test_parse_shape_rejects_non_shapes_in_one_line(text):
    with pytest.raises(LwprofError) as caught:
        parse_shape(text)
    assert "\n" not in str(caught.value) and "positive integers" in str(caught.value)


# ---------------------------------------------------------------- zoo


@pytest.mark.parametrize(
    "spec, name",
    [
        ("mobilenet_v3_small_100", "mobilenet_v3_small_100"),
        ("mobilenetv3_small", "mobilenet_v3_small_100"),  # alias
        ("MobileNet-V3-Small-100", "mobilenet_v3_small_100"),  # the registry normalises case and dashes
    ],
)
def test_zoo_name_and_alias(spec, name):
    loaded = load_model(spec)
    assert (loaded.name, loaded.kind, loaded.source, loaded.onnx_path) == (name, "torch", "zoo", None)
    assert sum(p.numel() for p in loaded.module.parameters()) == get_model_info(name).count_params() == 2_542_856
    assert loaded.input_shape == (1, 3, 224, 224)


def test_zoo_input_shape_comes_from_the_registry():
    # MobileNetViT is registered at 256x256, not the 224 default
    assert load_model("mobilevit_xxs").input_shape == (1, 3, 256, 256)


def test_unknown_zoo_name_keeps_the_registry_error_with_suggestions():
    with pytest.raises(UnknownModelError) as caught:
        load_model("mobilenetv9")
    assert "mobilenetv3" in caught.value.suggestions
    assert "\n" not in str(caught.value)


# ---------------------------------------------------------------- overrides


@pytest.mark.parametrize(
    "spec, input_shape, batch_size, expected",
    [
        ("squeezenet", None, None, (1, 3, 224, 224)),
        ("squeezenet", None, 8, (8, 3, 224, 224)),
        ("squeezenet", (2, 3, 64, 64), None, (2, 3, 64, 64)),
        ("squeezenet", (2, 3, 64, 64), 5, (5, 3, 64, 64)),  # batch size applies after the shape
        ("mobilevit_xxs", None, 3, (3, 3, 256, 256)),  # keeps the registry's resolution
    ],
)
def test_input_shape_and_batch_size_overrides(spec, input_shape, batch_size, expected):
    assert load_model(spec, input_shape=input_shape, batch_size=batch_size).input_shape == expected


@pytest.mark.parametrize("kwargs", [{"batch_size": 0}, {"batch_size": -2}, {"input_shape": (1, 0, 8)}, {"input_shape": ()}])
def test_bad_overrides_are_one_line_errors(kwargs):
    one_line_error("squeezenet", **kwargs)


def test_loaded_model_is_frozen():
    loaded = load_model("squeezenet")
    assert isinstance(loaded, LoadedModel)
    with pytest.raises(AttributeError):
        loaded.input_shape = (1, 3, 8, 8)


# ---------------------------------------------------------------- file.py:attr and package.module:attr


@pytest.mark.parametrize(
    "attr, out_channels",
    [
        ("Net", 4),  # a class: called with its defaults
        ("build", 8),  # a factory function
        ("model", 6),  # an instance
    ],
)
def test_python_file_factory_class_and_instance(tmp_path, attr, out_channels):
    path = write(tmp_path / "net.py", NET_PY)
    loaded = load_model(f"{path}:{attr}")
    assert (loaded.name, loaded.kind, loaded.source, loaded.input_shape) == (attr, "torch", "file", DEFAULT_INPUT_SHAPE)
    assert loaded.module.conv.out_channels == out_channels


def test_python_file_is_imported_under_a_private_name(tmp_path):
    first = write(tmp_path / "a" / "model.py", NET_PY)
    second = write(tmp_path / "b" / "model.py", NET_PY.replace("width=8", "width=16"))
    one, two = load_model(f"{first}:build").module, load_model(f"{second}:build").module
    assert (one.conv.out_channels, two.conv.out_channels) == (8, 16)
    assert type(one) is not type(two)  # two files named model.py stay two modules
    assert type(one).__module__.startswith("_lwprof_user_model_")
    assert "model" not in sys.modules or sys.modules["model"].__file__ not in (str(first), str(second))


def test_relative_path_and_sys_path_restored(tmp_path, monkeypatch):
    write(tmp_path / "net.py", NET_PY)
    monkeypatch.chdir(tmp_path)
    before = list(sys.path)
    assert load_model("net.py:build").module.conv.out_channels == 8
    assert sys.path == before


def test_package_module_attr_from_sys_path(tmp_path, monkeypatch, forget_modules):
    forget_modules("loader_test_pkg")
    write(tmp_path / "loader_test_pkg" / "__init__.py", "")
    write(tmp_path / "loader_test_pkg" / "nets.py", NET_PY)
    monkeypatch.syspath_prepend(str(tmp_path))
    loaded = load_model("loader_test_pkg.nets:build")
    assert (loaded.name, loaded.source, loaded.module.conv.out_channels) == ("build", "module", 8)
    assert type(loaded.module).__module__ == "loader_test_pkg.nets"


def test_package_module_attr_from_the_current_directory(tmp_path, monkeypatch, forget_modules):
    # Like `python -m`: a package in the directory lwprof runs from is importable.
    forget_modules("loader_cwd_pkg")
    write(tmp_path / "loader_cwd_pkg" / "__init__.py", "")
    write(tmp_path / "loader_cwd_pkg" / "nets.py", NET_PY)
    monkeypatch.chdir(tmp_path)
    before = list(sys.path)
    assert load_model("loader_cwd_pkg.nets:Net").module.conv.out_channels == 4
    assert sys.path == before


def test_package_module_dotted_attr(tmp_path, monkeypatch, forget_modules):
    forget_modules("loader_dotted_pkg")
    write(tmp_path / "loader_dotted_pkg.py", NET_PY + "\n\nclass Zoo:\n    tiny = Net(width=2)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_model("loader_dotted_pkg:Zoo.tiny").module.conv.out_channels == 2


# ---------------------------------------------------------------- YOLO-style repo with its own `models` package

COMMON_PY = """\
import torch.nn as nn


class Conv(nn.Module):
    def __init__(self, c1, c2):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, 3, padding=1)

    def forward(self, x):
        return self.conv(x)
"""

YOLO_PY = """\
import torch.nn as nn

from models.common import Conv
from utils.general import WIDTH


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = Conv(3, WIDTH)

    def forward(self, x):
        return self.stem(x)
"""


def make_yolo_repo(root: Path, width: int) -> Path:
    write(root / "models" / "__init__.py", "")
    write(root / "models" / "common.py", COMMON_PY)
    write(root / "models" / "yolo.py", YOLO_PY)
    write(root / "utils" / "__init__.py", "")
    write(root / "utils" / "general.py", f"WIDTH = {width}\n")
    return root


def test_yolo_style_repo_with_its_own_models_package(tmp_path, monkeypatch, forget_modules):
    forget_modules("models", "utils")
    repo = make_yolo_repo(tmp_path / "repo", width=16)
    monkeypatch.chdir(repo)
    before = list(sys.path)

    loaded = load_model("models/yolo.py:Model")

    assert loaded.module.stem.conv.out_channels == 16
    assert type(loaded.module.stem).__module__ == "models.common"  # the user's package won
    assert Path(sys.modules["models"].__file__).resolve() == (repo / "models" / "__init__.py").resolve()
    assert sys.path == before
    zoo = importlib.import_module("lwprof.models")  # our zoo is untouched
    assert zoo.get_model_info("squeezenet").name == "squeezenet_1_1"
    assert load_model("squeezenet").source == "zoo"


def test_a_second_repo_gets_its_own_models_not_a_stale_one(tmp_path, monkeypatch, forget_modules):
    forget_modules("models", "utils")
    first = make_yolo_repo(tmp_path / "first", width=16)
    second = make_yolo_repo(tmp_path / "second", width=24)
    monkeypatch.chdir(first)
    assert load_model("models/yolo.py:Model").module.stem.conv.out_channels == 16
    monkeypatch.chdir(second)
    loaded = load_model("models/yolo.py:Model")
    assert loaded.module.stem.conv.out_channels == 24
    assert Path(sys.modules["models"].__file__).resolve() == (second / "models" / "__init__.py").resolve()


def test_running_from_elsewhere_uses_the_files_own_directory(tmp_path, monkeypatch, forget_modules):
    # A flat repo (net.py next to blocks.py) profiled from another directory.
    forget_modules("loader_blocks")
    write(tmp_path / "flat" / "loader_blocks.py", "WIDTH = 12\n")
    write(tmp_path / "flat" / "net.py", "import torch.nn as nn\nfrom loader_blocks import WIDTH\nmodel = nn.Conv2d(3, WIDTH, 1)\n")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert load_model("../flat/net.py:model").module.out_channels == 12


# ---------------------------------------------------------------- TorchScript


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
@pytest.mark.parametrize("how", ["script", "trace"])
@pytest.mark.parametrize("suffix", [".pt", ".ts", ".model"])  # any file torch.jit.load accepts
def test_torchscript_file(tmp_path, how, suffix):
    torch.manual_seed(0)
    eager = TinyNet().eval()
    x = torch.randn(1, 3, 8, 8)
    saved = torch.jit.script(eager) if how == "script" else torch.jit.trace(eager, x)
    path = tmp_path / f"tiny{suffix}"
    saved.save(str(path))

    loaded = load_model(str(path))
    assert (loaded.name, loaded.kind, loaded.source, loaded.input_shape) == ("tiny", "torch", "torchscript", (1, 3, 224, 224))
    with torch.no_grad():
        assert torch.equal(loaded.module(x), eager(x))


# ---------------------------------------------------------------- ONNX


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript-based exporter, chosen for speed
def test_onnx_exported_file_uses_its_static_input_shape(tmp_path):
    path = tmp_path / "tiny.onnx"
    torch.onnx.export(TinyNet().eval(), (torch.randn(2, 3, 16, 16),), str(path), dynamo=False, input_names=["x"])
    loaded = load_model(str(path))
    assert (loaded.name, loaded.kind, loaded.source, loaded.module) == ("tiny", "onnx", "onnx", None)
    assert loaded.onnx_path == path
    assert loaded.input_shape == (2, 3, 16, 16)
    assert load_model(str(path), batch_size=4).input_shape == (4, 3, 16, 16)
    assert load_model(str(path), input_shape=(1, 3, 32, 32)).input_shape == (1, 3, 32, 32)


def onnx_identity_file(path: Path, dims: list) -> Path:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, dims)],
    )
    onnx.save(helper.make_model(graph), str(path))
    return path


@pytest.mark.parametrize(
    "dims, expected",
    [
        ([1, 3, 96, 128], (1, 3, 96, 128)),
        (["batch", 3, 96, 128], (1, 3, 96, 128)),  # only the batch is symbolic: batch 1
        (["batch", 3, "height", "width"], DEFAULT_INPUT_SHAPE),  # the graph does not say
    ],
)
def test_onnx_input_shape_static_symbolic_batch_or_default(tmp_path, dims, expected):
    assert load_model(str(onnx_identity_file(tmp_path / "g.onnx", dims))).input_shape == expected


# ---------------------------------------------------------------- torchvision: and timm:


class _BrokenImport:
    """A meta-path finder making `import NAME` fail like a torchvision built for
    another torch does."""

    def __init__(self, name: str):
        self.name = name

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.name:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        raise RuntimeError("operator torchvision::nms does not exist\nmore detail on a second line")


@pytest.mark.parametrize("hub", ["torchvision", "timm"])
def test_hub_package_missing_gives_an_install_hint(monkeypatch, hub):
    monkeypatch.setitem(sys.modules, hub, None)  # makes `import hub` raise ModuleNotFoundError
    message = one_line_error(f"{hub}:resnet18")
    assert message == f"{hub} is not installed: pip install {hub}, then retry"


@pytest.mark.parametrize("hub", ["torchvision", "timm"])
def test_hub_package_broken_says_it_failed_to_import_and_why(monkeypatch, hub):
    monkeypatch.delitem(sys.modules, hub, raising=False)
    monkeypatch.setattr(sys, "meta_path", [_BrokenImport(hub), *sys.meta_path])
    message = one_line_error(f"{hub}:resnet18")
    assert f"{hub} is installed but failed to import" in message
    assert "operator torchvision::nms does not exist" in message


def fake_torchvision(calls: list) -> types.ModuleType:
    def get_model(name, **kwargs):
        calls.append((name, kwargs))
        return TinyNet()

    package = types.ModuleType("torchvision")
    package.models = types.SimpleNamespace(list_models=lambda: ["resnet18", "resnet50"], get_model=get_model)
    return package


def test_torchvision_builds_without_weights(monkeypatch):
    calls = []
    monkeypatch.setitem(sys.modules, "torchvision", fake_torchvision(calls))
    loaded = load_model("torchvision:resnet18", batch_size=2)
    assert calls == [("resnet18", {"weights": None})]
    assert (loaded.name, loaded.source, loaded.input_shape) == ("resnet18", "torchvision", (2, 3, 224, 224))
    assert isinstance(loaded.module, TinyNet)
    assert "did you mean resnet18" in one_line_error("torchvision:resnet19")


def test_timm_builds_without_pretrained_weights_at_its_configured_size(monkeypatch):
    calls = []

    def create_model(name, **kwargs):
        calls.append((name, kwargs))
        model = TinyNet()
        model.pretrained_cfg = {"input_size": (3, 288, 288)}
        return model

    names = ["efficientnet_b3", "resnet18"]
    fake = types.ModuleType("timm")
    fake.create_model, fake.is_model, fake.list_models = create_model, names.__contains__, lambda: names
    monkeypatch.setitem(sys.modules, "timm", fake)

    loaded = load_model("timm:efficientnet_b3")
    assert calls == [("efficientnet_b3", {"pretrained": False})]
    assert (loaded.name, loaded.source, loaded.input_shape) == ("efficientnet_b3", "timm", (1, 3, 288, 288))
    assert "did you mean efficientnet_b3" in one_line_error("timm:efficientnet_b4")
    assert "never downloads" in one_line_error("timm:hf-hub:timm/resnet18.a1_in1k")
    assert len(calls) == 1


# ---------------------------------------------------------------- specs that do not resolve


def bad_file(tmp_path: Path, kind: str) -> Path:
    if kind == "state_dict":
        torch.save(TinyNet().state_dict(), tmp_path / "weights.pt")
        return tmp_path / "weights.pt"
    if kind == "checkpoint":
        torch.save({"epoch": 3, "model": TinyNet().state_dict()}, tmp_path / "last.pth")
        return tmp_path / "last.pth"
    if kind == "whole_model":
        torch.save(TinyNet(), tmp_path / "whole.pt")
        return tmp_path / "whole.pt"
    if kind == "garbage":
        (tmp_path / "junk.pt").write_bytes(b"this is not a model at all")
        return tmp_path / "junk.pt"
    if kind == "garbage_onnx":
        (tmp_path / "junk.onnx").write_bytes(b"this is not a model at all")
        return tmp_path / "junk.onnx"
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind, expected",
    [
        ("state_dict", "is a state_dict (2 tensors, no architecture): pass the code that builds the model as file.py:factory"),
        ("checkpoint", "is a checkpoint dict (keys 'epoch', 'model') of weights, not a model"),
        ("whole_model", "TinyNet; torch.save of a whole model?), which lwprof does not unpickle"),
        ("garbage", "is not a TorchScript, ONNX or torch.save file"),
        ("garbage_onnx", "is not a valid ONNX model"),
    ],
)
def test_files_that_are_not_models(tmp_path, kind, expected):
    assert expected in one_line_error(str(bad_file(tmp_path, kind)))


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("{d}/nowhere.py:build", "no such file: {d}/nowhere.py"),
        ("{d}/nowhere.pt", "no such file: {d}/nowhere.pt"),
        ("{d}/nowhere.onnx", "no such file: {d}/nowhere.onnx"),
        ("{d}/net.py:nope", "{d}/net.py has no attribute 'nope'; models and factories there: Net, model"),
        ("{d}/net.py:number", "attribute number of {d}/net.py is an int, not an nn.Module or a factory returning one"),
        (
            "{d}/net.py:not_a_model",
            "attribute not_a_model of {d}/net.py is a function returning an int, not an nn.Module or a factory returning one",
        ),
        ("{d}/net.py:needs_width", "needs_width in {d}/net.py takes required arguments (width)"),
        ("{d}/net.py:boom", "calling boom() from {d}/net.py failed at {d}/net.py:22: ValueError: boom"),
        ("{d}/net.py", "{d}/net.py is a Python file: name what to profile in it, as {d}/net.py:NAME"),
        ("{d}/net.py:bad-name", "'bad-name' after {d}/net.py: is not a Python name"),
        ("{d}", "{d} is a directory, not a model file"),
        ("loader_no_such_pkg.sub:model", "no module named 'loader_no_such_pkg'"),
        ("torch.nn:no_such_layer", "torch.nn has no attribute 'no_such_layer'"),
        ("torchvision:", "'torchvision:' names no model"),
        ("what is this:x", "cannot read spec 'what is this:x'"),
        ("", "empty model spec"),
    ],
)
def test_specs_that_do_not_resolve_are_one_line(tmp_path, spec, expected):
    write(tmp_path / "net.py", NET_PY)
    message = one_line_error(spec.format(d=tmp_path))
    assert expected.format(d=tmp_path) in message


@pytest.mark.parametrize(
    "source, expected",
    [
        ("def broken(:\n", "SyntaxError"),
        ("import loader_missing_dependency\n", "ModuleNotFoundError: No module named 'loader_missing_dependency'"),
        ("x = 1\nraise RuntimeError('bad\\nthings')\n", "failed at {path}:2: RuntimeError: bad"),
        ("import sys\nsys.exit(2)\n", "it called sys.exit(2)"),
        ("from .sibling import Net\n", "pass it as package.module:NAME"),
    ],
)
def test_errors_inside_the_users_file_name_the_file(tmp_path, source, expected):
    path = write(tmp_path / "user_model.py", source)
    message = one_line_error(f"{path}:Net")
    assert message.startswith(f"importing {path} failed")
    assert expected.format(path=path) in message
    assert not any(name.startswith("_lwprof_user_user_model_") for name in sys.modules)


def test_zoo_weights_are_the_same_on_every_load_and_leave_the_global_rng_alone():
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    first = load_model("pplcnet_025").module
    second = load_model("pplcnet_025").module
    assert torch.rand(1) == expected_next  # the caller's random stream did not move
    for a, b in zip(first.state_dict().values(), second.state_dict().values()):
        assert torch.equal(a, b)
