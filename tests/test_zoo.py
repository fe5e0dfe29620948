"""The zoo, parametrized over the registry: a new model is covered with no new test code."""

import ast
import pathlib

import pytest
import torch

import lwprof.models as zoo
from lwprof.models import _registry

ALL_MODELS = zoo.list_models()
WITH_REFERENCE_PARAMS = [n for n in ALL_MODELS if (r := zoo.get_model_info(n).reference) and r.params is not None]
WITH_REFERENCE_MACS = [n for n in ALL_MODELS if (r := zoo.get_model_info(n).reference) and r.macs is not None]

# The family aliases the project promises (issue #2), alias -> canonical variant.
FAMILY_ALIASES = {
    "mobilenetv1": "mobilenet_v1_100",
    "mobilenetv2": "mobilenet_v2_100",
    "mobilenetv3": "mobilenet_v3_large_100",
    "shufflenetv1": "shufflenet_v1_g3_100",
    "shufflenetv2": "shufflenet_v2_100",
    "squeezenet": "squeezenet_1_1",
    "ghostnet": "ghostnet_100",
    "pplcnet": "pplcnet_100",
    "lcnet": "pplcnet_100",
    "mobilenext": "mobilenext_100",
    "efficientnet": "efficientnet_b0",
    "mnasnet": "mnasnet_100",
    "mobilevit": "mobilevit_s",
    "xception": "xception",
    # issue 13's families
    "inceptionv1": "googlenet",
    "inceptionv3": "inception_v3",
    "inceptionv4": "inception_v4",
    "resnet50_v1b": "resnet50",
    "resnest": "resnest50d",
    "fbnet": "fbnet_c",
    "efficientformer": "efficientformer_l1",
    "mobileformer": "mobileformer_294m",
    "espnet": "espnet_v1",
    "espnetv2": "espnetv2_100",
    "addernet": "addernet_resnet20",
    "condensenet": "condensenet_g4c4",
    "mobilenetv2_ca": "mobilenet_v2_ca",
    "mobilenetv2_eca": "mobilenet_v2_eca",
    "mobilenetv2_sa": "mobilenet_v2_sa",
    "mobilenetv2_triplet": "mobilenet_v2_triplet",
}


def test_reference_lists_are_not_empty():
    assert WITH_REFERENCE_PARAMS and WITH_REFERENCE_MACS


@pytest.mark.parametrize("name", ALL_MODELS)
def test_forward_on_default_input(name, zoo_measure):
    out = zoo_measure(name)["output"]
    assert tuple(out.shape) == zoo.get_model_info(name).output_shape
    assert torch.isfinite(out).all()


# A trained network's activations stay near unit scale at every depth. Before per-group
# fan-out and data-free BatchNorm statistics, mobilenet_v2_100's logits had a standard
# deviation of 1e-9, pplcnet_250's 1e-24, and espnet_v1's decoder reached 7e7: int8
# scales and output agreement on such weights mean nothing.
ACTIVATION_STD_BAND = (0.01, 10.0)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_activations_stay_well_scaled_at_every_stage(name, zoo_measure):
    stage_stds = zoo_measure(name)["stage_stds"]
    low, high = ACTIVATION_STD_BAND
    assert len(stage_stds) >= 3, stage_stds  # the hooks saw the model's stages
    outside = {path: f"{std:.3g}" for path, std in stage_stds.items() if not low <= std <= high}
    assert not outside, f"stage outputs outside the band {ACTIVATION_STD_BAND}: {outside}"
    assert low <= zoo_measure(name)["output"].std().item() <= high


def test_batchnorm_statistics_do_not_depend_on_the_thread_count():
    # A worker process rebuilds the model with the run's thread count and must get the very
    # weights the lwprof process has (fingerprinted), whatever threads each one uses.
    states = []
    threads = torch.get_num_threads()
    try:
        for count in (1, 2):
            torch.set_num_threads(count)
            torch.manual_seed(0)
            states.append(zoo.create_model("mobilenet_v3_small_100").state_dict())
    finally:
        torch.set_num_threads(threads)
    assert torch.get_num_threads() == threads
    assert states[0].keys() == states[1].keys()
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    bn = zoo.create_model("mobilenet_v3_small_100").features[0].bn
    assert bn.num_batches_tracked.item() == 1 and not torch.equal(bn.running_var, torch.ones_like(bn.running_var))


def test_batchnorm_statistics_are_not_set_on_the_meta_device():
    with torch.device("meta"):
        model = zoo.create_model("mobilenet_v2_100")
    assert next(model.parameters()).is_meta


@pytest.mark.parametrize("name", ALL_MODELS)
def test_metadata_is_complete(name):
    info = zoo.get_model_info(name)
    assert info.family and info.variant and info.mirrors
    assert info.paper.arxiv and info.paper.title and 2012 <= info.paper.year <= 2026
    assert len(info.input_shape) == 4 and info.input_shape[:2] == (1, 3)
    # Counting on the meta device must agree with counting a real model.
    assert info.count_params() == sum(p.numel() for p in zoo.create_model(name).parameters())
    # An ImageNet top-1 belongs to a 1000-class head; anything else must say its dataset,
    # or compare's ImageNet column and accuracy plot would mix datasets.
    if info.published.top1 is not None:
        imagenet_head = info.output_shape == (1, 1000)
        assert (info.published.imagenet_top1 is not None) == imagenet_head


@pytest.mark.parametrize("name", WITH_REFERENCE_PARAMS)
def test_params_equal_reference(name, zoo_measure):
    assert zoo_measure(name)["params"] == zoo.get_model_info(name).reference.params


@pytest.mark.parametrize("name", WITH_REFERENCE_MACS)
def test_conv_linear_macs_equal_reference(name, zoo_measure):
    assert zoo_measure(name)["macs"] == zoo.get_model_info(name).reference.macs


@pytest.mark.parametrize("name", ["mobilenet_v2_100", "shufflenet_v2_100", "squeezenet_1_1"])
def test_num_classes_is_passed_through(name):
    model = zoo.create_model(name, num_classes=10).eval()
    with torch.no_grad():
        assert model(torch.randn(zoo.get_model_info(name).input_shape)).shape == (1, 10)


@pytest.mark.parametrize("alias,target", sorted(FAMILY_ALIASES.items()))
def test_family_alias_resolves(alias, target):
    assert zoo.resolve_name(alias) == target
    assert zoo.get_model_info(alias.upper()).name == target


def test_unknown_name_suggests_close_matches():
    with pytest.raises(zoo.UnknownModelError) as excinfo:
        zoo.create_model("mobilenet_v3_larg_100")
    assert excinfo.value.suggestions[0] == "mobilenet_v3_large_100"
    assert 1 <= len(excinfo.value.suggestions) <= 3
    assert "did you mean mobilenet_v3_large_100" in str(excinfo.value)


def test_unknown_name_without_close_match_has_no_suggestion():
    with pytest.raises(zoo.UnknownModelError) as excinfo:
        zoo.get_model_info("qqqqqqqq")
    assert excinfo.value.suggestions == []


@pytest.fixture
def scratch_registry(monkeypatch):
    monkeypatch.setattr(_registry, "_MODELS", dict(_registry._MODELS))
    monkeypatch.setattr(_registry, "_ALIASES", dict(_registry._ALIASES))


def _register(name):
    paper = zoo.Paper("0000.00000", "t", 2020)

    @zoo.register_model(family="f", variant="v", paper=paper, mirrors="m", name=name)
    def builder():
        return torch.nn.Identity()

    return builder


def test_duplicate_model_name_raises(scratch_registry):
    _register("scratch_model")
    with pytest.raises(zoo.DuplicateModelError):
        _register("scratch_model")
    with pytest.raises(zoo.DuplicateModelError):
        _register("mobilenet_v2_100")


def test_duplicate_or_dangling_alias_raises(scratch_registry):
    with pytest.raises(zoo.DuplicateModelError):
        zoo.register_alias("mobilenetv2", "mobilenet_v2_140")
    with pytest.raises(zoo.DuplicateModelError):
        zoo.register_alias("mobilenet_v2_100", "mobilenet_v2_140")
    with pytest.raises(zoo.UnknownModelError):
        zoo.register_alias("fresh_alias", "no_such_model")


def test_invalid_width_is_a_clear_error():
    from lwprof.models.mobilenet_v2 import MobileNetV2

    with pytest.raises(ValueError, match="width multiplier must be positive"):
        MobileNetV2(width_mult=0)


def test_models_never_import_the_profiler():
    models_dir = pathlib.Path(zoo.__file__).parent
    for path in models_dir.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for module in names:
                assert not (module == "lwprof" or module.startswith("lwprof.")) or module.startswith(
                    "lwprof.models"
                ), f"{path.name} imports {module}"


APPROXIMATE = [n for n in ALL_MODELS if zoo.get_model_info(n).approximate is not None]


def test_every_family_is_checked_against_a_reference_or_the_paper():
    # Width and group variants without their own figure (mobilenet_v1_025, shufflenet_v1_g2_100, ...) scale
    # a variant that has one; every family has at least one variant pinned to outside figures.
    checked = {info.family for n in ALL_MODELS if (info := zoo.get_model_info(n)).reference or info.approximate}
    assert {zoo.get_model_info(n).family for n in ALL_MODELS} == checked


@pytest.mark.parametrize("name", APPROXIMATE)
def test_approximate_families_land_near_the_paper(name, zoo_measure):
    target = zoo.get_model_info(name).approximate
    measured = zoo_measure(name)
    assert target.params is not None or target.macs is not None
    for quantity in ("params", "macs"):
        value = getattr(target, quantity)
        if value is not None:
            low, high = target.bounds(value)
            assert low <= measured[quantity] <= high, f"{quantity} {measured[quantity]:,} not within {target}"
