"""The analytic engine: exact counts on hand-computable layers, attribution, fusion, the zoo."""

import pytest
import torch
from torch import nn

import lwprof
from lwprof.core.errors import LwprofError
from lwprof.counting.engine import ForwardError, profile_module
from lwprof.models import create_model, list_models
from lwprof.models._blocks import ChannelShuffle, ConvBNAct, InvertedResidual


def only_layer(profile):
    (layer,) = profile.layers
    return layer


def test_pointwise_conv_exact():
    conv = nn.Conv2d(128, 128, 1, bias=False)
    layer = only_layer(profile_module(conv, (1, 128, 56, 56)))
    assert layer.macs == 51_380_224  # 56*56*128*128
    assert layer.flops == 102_760_448  # 2 * MACs, no bias
    # input 56*56*128 + output 56*56*128 + weights 128*128 = 819,200 elements, 4 bytes each
    assert layer.memory_bytes == 3_276_800
    assert layer.op_class == "conv_pointwise"
    assert layer.params == 16_384  # 128*128


def test_group_conv_exact():
    conv = nn.Conv2d(128, 128, 1, groups=4, bias=False)
    layer = only_layer(profile_module(conv, (1, 128, 56, 56)))
    assert layer.macs == 12_845_056  # 56*56*128*(128/4)
    # hw(c1+c2) + c1*c2/g = 802,816 + 4,096 = 806,912 elements
    assert layer.memory_bytes == 806_912 * 4


def test_depthwise_conv_exact():
    conv = nn.Conv2d(128, 128, 3, padding=1, groups=128, bias=False)
    layer = only_layer(profile_module(conv, (1, 128, 56, 56)))
    assert layer.macs == 3_612_672  # 56*56*128*(128/128)*3*3
    # 2 * 56*56*128 + 128*3*3 = 801,664... : 802,816 + 1,152 = 803,968 elements
    assert layer.memory_bytes == 803_968 * 4
    assert layer.op_class == "conv_depthwise"


def test_memory_is_dtype_aware():
    conv = nn.Conv2d(128, 128, 1, bias=False)
    layer = only_layer(profile_module(conv, (1, 128, 56, 56), dtype=torch.bfloat16))
    assert layer.memory_bytes == 819_200 * 2  # same elements, 2 bytes each
    assert conv.weight.dtype == torch.float32  # analysed on a copy


def test_linear_with_bias_exact():
    fc = nn.Linear(512, 1000)
    layer = only_layer(profile_module(fc, (1, 512)))
    assert layer.macs == 512_000  # 1*512*1000
    assert layer.flops == 1_025_000  # 2*512,000 + 1,000 bias adds
    # input 512 + weight 512,000 + bias 1,000 + output 1,000 = 514,512 elements
    assert layer.memory_bytes == 514_512 * 4
    assert layer.params == 513_000


class ConvBNReLUResidual(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(8, 8, 1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.bn(self.conv(x))) + x


def test_eager_vs_fused_memory_by_hand():
    profile = profile_module(ConvBNReLUResidual(), (1, 8, 4, 4))
    rows = {layer.name: layer for layer in profile.layers}
    # a 1x8x4x4 activation is 128 elements
    assert rows["conv"].memory_bytes == (128 + 64 + 128) * 4  # x, 8*8 weights, out
    assert rows["bn"].memory_bytes == (128 + 4 * 8 + 128) * 4  # in, 4 per-channel vectors, out
    assert rows["relu"].memory_bytes == (128 + 128) * 4
    assert rows["<root> (add)"].memory_bytes == (128 + 128 + 128) * 4
    assert profile.totals["memory_bytes"] == 1_248 * 4  # 320 + 288 + 256 + 384
    # Fused: BN folded and ReLU in the conv epilogue (their traffic disappears);
    # the add joins too but still reads the shortcut x (128 elements).
    assert rows["conv"].memory_bytes_fused == 320 * 4
    assert rows["bn"].memory_bytes_fused == 0
    assert rows["relu"].memory_bytes_fused == 0
    assert rows["<root> (add)"].memory_bytes_fused == 128 * 4
    assert profile.totals["memory_bytes_fused"] == 448 * 4
    # eager - fused = exactly the traffic removed: 288 + 256 + (384 - 128) = 800 elements
    assert profile.totals["memory_bytes"] - profile.totals["memory_bytes_fused"] == 800 * 4
    fused_into = {op.op: op.fused_into for op in profile.ops}
    assert fused_into["aten.native_batch_norm"] == fused_into["aten.relu"] == fused_into["aten.add"] == 0


def test_no_fusion_when_the_intermediate_has_another_consumer():
    class Branching(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(8, 8, 1, bias=False)

        def forward(self, x):
            y = self.conv(x)
            return torch.relu(y) + y  # y is read twice: it must be written to memory

    profile = profile_module(Branching(), (1, 8, 4, 4))
    assert profile.totals["memory_bytes_fused"] == profile.totals["memory_bytes"]


def test_channel_shuffle_costs_one_copy():
    layer = only_layer(profile_module(ChannelShuffle(2), (1, 8, 4, 4)))
    assert layer.ops == {"aten.clone": 1}  # view/transpose/view are free
    assert layer.memory_bytes == (128 + 128) * 4  # read and write 1*8*4*4 elements
    assert layer.flops == 0 and layer.op_class == "data_movement"


def test_index_gather_costs_only_its_memory():
    class BiasGather(nn.Module):  # EfficientFormer's attention biases: table[:, index]
        def __init__(self):
            super().__init__()
            self.table = nn.Parameter(torch.zeros(8, 49))
            self.register_buffer("index", torch.zeros(49, 49, dtype=torch.long))

        def forward(self, x):
            return self.table[:, self.index]

    layer = only_layer(profile_module(BiasGather(), (1, 8)))
    assert layer.ops == {"aten.index": 1}
    assert layer.macs == 0 and layer.flops == 0 and layer.op_class == "data_movement"
    # read the 8*49 float table (1,568 B) and the 49*49 int64 index (19,208 B),
    # write 8*49*49 floats (76,832 B)
    assert layer.memory_bytes == 1_568 + 19_208 + 76_832


def test_channel_max_is_one_comparison_per_input_element():
    class ChannelMax(nn.Module):  # triplet attention's Z-pool: max over channels
        def forward(self, x):
            return torch.amax(x, dim=1, keepdim=True)

    layer = only_layer(profile_module(ChannelMax(), (1, 4, 8, 8)))
    assert layer.ops == {"aten.amax": 1}
    assert layer.macs == 0 and layer.op_class == "reduction"
    assert layer.flops == 256  # 1*4*8*8 input elements, one comparison each
    assert layer.memory_bytes == 4 * (256 + 64)  # read 256 floats, write 1*1*8*8


def test_elementwise_ops_are_counted():
    block = InvertedResidual(16, 16, 64, 3, 1, nn.ReLU6)
    profile = profile_module(block, (1, 16, 8, 8))
    add = {layer.name: layer for layer in profile.layers}["<root> (add)"]
    assert add.flops == 1_024  # one per output element, 16*8*8
    assert add.memory_bytes == 3 * 1_024 * 4
    relu6 = {layer.name: layer for layer in profile.layers}["expand.act"]
    assert relu6.flops == 2 * 64 * 8 * 8  # min and max per element
    assert relu6.op_class == "activation"


def test_functional_ops_in_a_container_get_their_own_row():
    model = nn.Sequential(ConvBNAct(3, 16, 3, 2), InvertedResidual(16, 16, 64))
    names = [layer.name for layer in profile_module(model, (1, 3, 32, 32)).layers]
    assert names[:3] == ["0.conv", "0.bn", "0.act"]
    assert "1 (add)" in names and "1.expand.conv" in names
    assert len(names) == len(set(names))


def test_shared_module_params_counted_once():
    shared = nn.Linear(8, 8)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    profile = profile_module(model, (1, 8))
    assert profile.params == 72  # 8*8 + 8, once
    assert sum(layer.params for layer in profile.layers) == 72
    row = {layer.name: layer for layer in profile.layers}["0"]
    assert row.calls == 2 and row.macs == 2 * 64


def test_unsupported_op_is_reported_and_its_memory_counted():
    class Cumulative(nn.Module):
        def forward(self, x):
            return torch.cumsum(x, dim=1) * 2

    profile = profile_module(Cumulative(), (1, 8, 4, 4))
    assert profile.unsupported_ops == {"aten.cumsum": 1}
    row = only_layer(profile)  # a childless root is one leaf row holding both ops
    assert row.name == "<root>" and row.ops == {"aten.cumsum": 1, "aten.mul": 1}
    assert row.unsupported_ops == {"aten.cumsum": 1}
    assert row.memory_bytes == 4 * 128 * 4  # cumsum and mul each read and write 128 elements
    assert row.flops == 128  # the mul alone: cumsum contributes nothing it could invent


def test_no_side_effects_and_repeatable():
    model = create_model("shufflenet_v2_050")
    model.train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    first = profile_module(model, (1, 3, 224, 224))
    second = profile_module(model, (1, 3, 224, 224))
    assert first.layer_rows() == second.layer_rows()
    assert first.totals == second.totals
    assert all(m.training for m in model.modules())  # flags restored
    assert not torch.nn.modules.module._global_forward_hooks
    assert not torch.nn.modules.module._global_forward_pre_hooks
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key  # BN running stats untouched


@pytest.mark.parametrize("wrap", [tuple, list, lambda y: {"logits": y}])
def test_structured_outputs(wrap):
    class Wrapped(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            return wrap([self.fc(x)]) if wrap is not tuple else (self.fc(x), x)

    assert profile_module(Wrapped(), (1, 4)).totals["macs"] == 8


def test_wrong_input_shape_names_the_layer_and_shapes():
    model = create_model("mobilenet_v2_100")
    with pytest.raises(ForwardError) as excinfo:
        profile_module(model, (1, 1, 224, 224))
    message = str(excinfo.value)
    assert isinstance(excinfo.value, LwprofError)
    assert "features.0.conv" in message and "[1, 1, 224, 224]" in message and "[32, 3, 3, 3]" in message
    assert "\n" not in message


def test_analyze_by_name_uses_the_zoo_input():
    profile = lwprof.analyze("mobilevit_xxs")
    assert profile.input_shape == (1, 3, 256, 256)
    assert profile.model == "mobilevit_xxs"
    frame = profile.to_dataframe()
    assert list(frame["layer"]) == [layer.name for layer in profile.layers]
    assert frame["macs"].sum() == profile.totals["macs"]


@pytest.mark.parametrize("name", list_models())
def test_zoo_macs_equal_flop_counter_and_every_op_is_covered(name, zoo_measure):
    profile = lwprof.analyze(name)
    assert profile.unsupported_ops == {}
    assert profile.totals["macs"] == zoo_measure(name)["macs"]
    assert profile.params == zoo_measure(name)["params"]
    assert 0 < profile.totals["memory_bytes_fused"] < profile.totals["memory_bytes"]


def test_adder_layer_counts_subtractions_abs_and_additions_not_macs():
    from lwprof.models.addernet import Adder2d

    profile = profile_module(Adder2d(16, 32, 3, padding=1), (1, 16, 8, 8))
    layer = only_layer(profile)
    # 1*32*8*8 = 2,048 outputs, each over a Cin*k*k = 16*3*3 = 144 patch
    assert layer.macs == 0
    flops = {op.op: op.flops for op in profile.ops}
    assert flops == {
        "aten.im2col": 0,  # the patch copy
        "aten.sub": 294_912,  # 2,048 * 144 subtractions
        "aten.linalg_vector_norm": 587_776,  # 2,048 * (144 abs + 143 additions)
        "aten.neg": 2_048,  # one negation per output
    }
    assert layer.flops == 884_736  # 2,048 * 3 * 144
    assert layer.params == 4_608  # 32*16*3*3, a convolution's filters
    # im2col 1,024 in + 9,216 out; sub 9,216 + 4,608 weights in + 294,912 out;
    # norm 294,912 in + 2,048 out; neg 2,048 + 2,048: 620,032 elements
    assert layer.memory_bytes == 620_032 * 4
    assert layer.op_class == "reduction"
    # 1x1 stride-2 shortcut: 1*32*4*4 = 512 outputs over 16 channels, 3 * 16 FLOPs each
    assert only_layer(profile_module(Adder2d(16, 32, 1, stride=2), (1, 16, 8, 8))).flops == 24_576


def test_adder_layer_onnx_count_and_output_match(tmp_path):
    import numpy as np
    import onnxruntime as ort

    from lwprof.counting.onnx_count import analyze_onnx
    from lwprof.counting.onnx_export import export_onnx
    from lwprof.models.addernet import Adder2d

    model = Adder2d(16, 32, 3, padding=1).eval()
    path = export_onnx(model, (1, 16, 8, 8), tmp_path / "adder.onnx")
    counted = analyze_onnx(path, (1, 16, 8, 8))
    # Sub 294,912 + ReduceL1 587,776 (144 abs + 143 additions per output) + Neg 2,048
    assert counted.totals["flops"] == 884_736 and counted.totals["macs"] == 0
    assert counted.params == 4_608 and counted.unsupported_ops == {}
    x = torch.randn(1, 16, 8, 8)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = model(x).numpy()
    np.testing.assert_allclose(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0], expected, rtol=1e-5)
