"""AdderNet: Do We Really Need Multiplications in Deep Learning?

Chen et al., CVPR 2020, https://arxiv.org/abs/1912.13200. The layout mirrors
the authors' CIFAR ResNet-20 (huawei-noah/AdderNet, ``resnet20.py`` and
``adder.py``): every 3×3 convolution of the residual blocks and every 1×1
projection shortcut is an adder layer, each followed by BatchNorm as in the
paper (Sect. 3.3: the adder's output has a large variance, so BN is kept);
the first layer is a regular 3×3 convolution and the classifier a regular 1×1
convolution on the pooled 64-channel map followed by BatchNorm, as in the
authors' code (the paper keeps the first and last layers multiplicative).
There is no packaged reference implementation: the parameter count is
compared with the paper's 0.27M (Sect. 4.1, CIFAR experiments).

An adder layer replaces the cross-correlation by the negative L1 distance
between each input patch and each filter,
``Y[n, o, p] = -Σ_{c,i,j} |X[n, c, p+(i,j)] - W[o, c, i, j]|``. Here it is
written with standard, exportable ops, as the authors' forward pass computes
it: ``unfold`` (im2col) → a broadcast subtraction of the filters → the L1 norm
over the patch axis (``torch.linalg.vector_norm(ord=1)``, ONNX
``ReduceL1``) → negation. The profiler counts it as what it is: per output
element Cin·k·k subtractions, Cin·k·k absolute values, Cin·k·k − 1 additions
and one negation, 3·Cin·k·k FLOPs and no MACs (README "Counting
conventions"). Only the first convolution and the classifier have MACs, so
conv+linear MACs are those two layers alone.

Choices where the paper is silent: the adder filters start from a unit normal
(as the authors' ``adder2d``), the adder layers have no bias (``bias=False``
throughout the authors' ResNet-20), and the broadcast difference is
materialised before the norm (PyTorch has no fused adder kernel), which is
what eager execution and ONNX Runtime then pay in memory traffic. With random
filters and fresh BatchNorm statistics every adder output is strongly negative
(it is a negative distance), so with fresh BatchNorm statistics the ReLUs
would zero it and the random network would output zeros. Trained statistics
re-centre it; here, as for every zoo model, the registered builder sets them
data-free (``settle_batchnorm``), so activations stay well scaled.
"""

import torch
import torch.nn.functional as F
from torch import nn

from ._blocks import ConvBNAct, init_weights
from ._registry import Approximate, Paper, Published, register_alias, register_model

PAPER = Paper("1912.13200", "AdderNet: Do We Really Need Multiplications in Deep Learning?", 2020)


class Adder2d(nn.Module):
    """The adder layer: negative L1 distance between input patches and filters.

    The filter tensor has a convolution's layout ``(Cout, Cin, k, k)``, so the
    layer has the parameters of the convolution it replaces.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        bias: bool = False,
    ):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        nn.init.normal_(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = x.shape
        k, s, p = self.kernel_size, self.stride, self.padding
        out_h, out_w = (height + 2 * p - k) // s + 1, (width + 2 * p - k) // s + 1
        patches = F.unfold(x, k, padding=p, stride=s)  # (N, Cin·k·k, Hout·Wout)
        filters = self.weight.view(1, self.out_channels, -1, 1)  # (1, Cout, Cin·k·k, 1)
        diff = patches.unsqueeze(1) - filters  # (N, Cout, Cin·k·k, Hout·Wout)
        distance = torch.linalg.vector_norm(diff, ord=1, dim=2)  # (N, Cout, Hout·Wout)
        out = distance.view(batch, self.out_channels, out_h, out_w).neg()
        if self.bias is not None:
            out = out + self.bias.view(1, -1, 1, 1)
        return out

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, bias={self.bias is not None}"
        )


class AdderBN(nn.Sequential):
    """Adder layer → BatchNorm, children named like :class:`ConvBNAct`'s."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1):
        super().__init__()
        self.adder = Adder2d(in_channels, out_channels, kernel_size, stride, padding=(kernel_size - 1) // 2)
        self.bn = nn.BatchNorm2d(out_channels)


class AdderBasicBlock(nn.Module):
    """ResNet basic block with adder layers: two 3×3 adders (BN after each, ReLU
    after the first), a 1×1 adder + BN projection shortcut where the shape
    changes; the ReLU comes after the residual add."""

    def __init__(self, in_channels: int, channels: int, stride: int = 1):
        super().__init__()
        self.adder1 = AdderBN(in_channels, channels, 3, stride)
        self.act1 = nn.ReLU(inplace=True)
        self.adder2 = AdderBN(channels, channels, 3)
        if stride != 1 or in_channels != channels:
            self.shortcut = AdderBN(in_channels, channels, 1, stride)
        else:
            self.shortcut = nn.Identity()
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.adder2(self.act1(self.adder1(x))) + self.shortcut(x))


class AdderResNetCifar(nn.Module):
    def __init__(self, num_classes: int = 10):
        super().__init__()
        in_ch = STEM_CHANNELS
        self.stem = ConvBNAct(3, in_ch, 3)
        stages: list[nn.Module] = []
        for channels, blocks, first_stride in ARCH:
            layers = []
            for i in range(blocks):
                layers.append(AdderBasicBlock(in_ch, channels, first_stride if i == 0 else 1))
                in_ch = channels
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)  # the authors' AvgPool2d(8) on the 8×8 map
        # The classifier: a bias-free 1×1 convolution (multiplicative) and BatchNorm, as the authors'.
        self.fc = ConvBNAct(in_ch, num_classes, 1, act_layer=None)
        self.flatten = nn.Flatten(1)
        init_weights(self)  # convs and BN; the adder filters keep their unit-normal start

    def forward(self, x):
        return self.flatten(self.fc(self.pool(self.stages(self.stem(x)))))


STEM_CHANNELS = 16

# ResNet-20 for CIFAR (He et al., Sect. 4.2; 6n + 2 layers with n = 3):
# c = output channels, n = basic blocks, s = first stride.
ARCH = [
    # c, n, s
    (16, 3, 1),
    (32, 3, 2),
    (64, 3, 2),
]


@register_model(
    family="addernet",
    variant="ResNet-20",
    paper=PAPER,
    mirrors="huawei-noah/AdderNet resnet20 (CIFAR-10)",
    input_shape=(1, 3, 32, 32),
    output_shape=(1, 10),
    approximate=Approximate("CIFAR-10 experiments (Sect. 4.1), ResNet-20 0.27M", params=270_000, tolerance=0.05),
    published=Published(params=270_000, top1=91.84, top1_dataset="CIFAR-10"),
    notes=(
        "No packaged reference: built from the authors' resnet20.py/adder.py. Obtained 272,484 params "
        "vs paper 0.27M; conv+linear MACs 443,008 (the 3x3 stem, 442,368, and the 1x1 classifier, 640): "
        "the 18 adder layers and 2 adder shortcuts multiply nothing. Their work is counted as "
        "subtractions, absolute values and additions, 3*Cin*k*k FLOPs per output element: 121,110,528 "
        "FLOPs on 32x32 (the convolutions they replace would be 40,370,176 MACs). "
        "top1 is CIFAR-10, not ImageNet."
    ),
)
def addernet_resnet20(**kwargs):
    return AdderResNetCifar(**kwargs)


register_alias("addernet", "addernet_resnet20")
