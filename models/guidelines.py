"""ShuffleNet V2's four guideline benchmarks, as data and network builders.

Ma et al., "ShuffleNet V2: Practical Guidelines for Efficient CNN
Architecture Design", ECCV 2018, https://arxiv.org/abs/1807.11164, Tables 1-4.
Each table is one registered :class:`GuidelineTable`: its rows (the paper's
configurations), the channel widths per hardware config ("gpu": GTX 1080Ti,
batch 8, batches/s; "arm": Snapdragon 810, batch 1, images/s), the paper's
throughputs, and a builder. Networks are randomly initialised, on 56x56 inputs.

What the paper leaves open, and what lwprof assumes (printed with every run):

- GPU batch size: 8 (the paper's usual GPU setting); ARM: 1.
- Table 3's parallel fragments: k branches of 1x1 convs side by side, merged
  by concatenation, each branch c -> c/k so that a block keeps width c and
  its FLOPs equal the 1-fragment block's (``merge="add"``: k branches of
  c' -> c' with c' = c/sqrt(k), summed). Series fragments: k 1x1 convs of
  c' -> c' with c' = round(c/sqrt(k)).
- Table 4's bottleneck: ResNet's 1x1 (c -> c/4), 3x3 (c/4 -> c/4), 1x1
  (c/4 -> c) with a ReLU after the first two convs and after the shortcut
  add (ResNet's placement), inner width c/4, input 56x56.
- No BatchNorm anywhere (the paper's blocks are plain convolutions), convs
  without bias.

Scales: ``x1/x2/x4`` multiply every channel width by 1, 2, 4. For Tables 3
and 4, the paper's columns are exactly those multiples of the first column's
``c``, so the same scales select them.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from typing import Any, Callable

INPUT_SIZE = 56
BATCH_SIZE = {"gpu": 8, "arm": 1}
THROUGHPUT_UNIT = {"gpu": "batches/s", "arm": "images/s"}
SCALES = (1, 2, 4)


@dataclass(frozen=True)
class GuidelineRow:
    """One configuration of a table: its label, channel widths at x1 per
    hardware config, and the paper's throughput per config and scale."""

    label: str
    widths: dict[str, dict[str, int]]  # config -> {"c1": .., "c2": ..} or {"c": ..}
    paper: dict[str, tuple[float, float, float]]  # config -> throughput at x1, x2, x4
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class GuidelineTable:
    number: int
    guideline: str
    claim: str
    rows: tuple[GuidelineRow, ...]
    build: Callable[..., Any]
    # The comparison the verdict rests on: (row predicted faster, row predicted slower).
    prediction: tuple[str, str]

    def row(self, label: str) -> GuidelineRow:
        for row in self.rows:
            if row.label == label:
                return row
        raise KeyError(label)


_TABLES: dict[int, GuidelineTable] = {}


def register_table(table: GuidelineTable) -> GuidelineTable:
    if table.number in _TABLES:
        raise ValueError(f"guideline table {table.number} is already registered")
    _TABLES[table.number] = table
    return table


def get_table(number: int) -> GuidelineTable:
    if number not in _TABLES:
        close = difflib.get_close_matches(str(number), [str(n) for n in _TABLES], n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise KeyError(f"no guideline table {number} (tables: {', '.join(map(str, sorted(_TABLES)))}){hint}")
    return _TABLES[number]


def table_numbers() -> list[int]:
    return sorted(_TABLES)


@dataclass(frozen=True)
class GuidelineConfig:
    """One network to count and measure: a table row at one scale for one hardware config."""

    table: int
    row: str
    config: str
    scale: int
    widths: dict[str, int]
    paper_throughput: float | None

    @property
    def batch_size(self) -> int:
        return BATCH_SIZE[self.config]

    @property
    def key(self) -> str:
        return f"table{self.table}|{self.row}|{self.config}|x{self.scale}"

    def input_shape(self, batch_size: int | None = None) -> tuple[int, int, int, int]:
        table = get_table(self.table)
        channels = table.build(**self.build_kwargs()).in_channels
        return (batch_size or self.batch_size, channels, INPUT_SIZE, INPUT_SIZE)

    def build_kwargs(self) -> dict[str, Any]:
        return {**self.widths, **get_table(self.table).row(self.row).options}

    def build(self):
        return get_table(self.table).build(**self.build_kwargs())


def configs(table: int, config: str, scales: tuple[int, ...] = SCALES) -> list[GuidelineConfig]:
    """Every row of ``table`` at every scale, in table order (row-major)."""
    if config not in BATCH_SIZE:
        raise KeyError(f"unknown hardware config '{config}' (gpu or arm)")
    result = []
    spec = get_table(table)
    for row in spec.rows:
        for scale in scales:
            if scale not in SCALES:
                raise KeyError(f"scale {scale} is not one of the paper's (1, 2, 4)")
            widths = {name: width * scale for name, width in row.widths[config].items()}
            groups = row.options.get("groups", 1)
            if widths.get("c", 0) % groups:
                # The paper's ARM g=8 width (180) does not split into 8 groups:
                # take the nearest multiple of g, upwards on a tie (184).
                widths["c"] = groups * math.floor(widths["c"] / groups + 0.5)
            paper = row.paper[config][SCALES.index(scale)]
            result.append(GuidelineConfig(table, row.label, config, scale, widths, paper))
    return result


# ---------------------------------------------------------------------------
# Networks (torch imported lazily: the CLI lists tables without it)


def _conv1x1(in_channels: int, out_channels: int, groups: int = 1):
    from torch import nn

    return nn.Conv2d(in_channels, out_channels, 1, groups=groups, bias=False)


def _stack(blocks: list, in_channels: int):
    from torch import nn

    net = nn.Sequential(*blocks)
    net.in_channels = in_channels
    return net


def build_g1(c1: int, c2: int, blocks: int = 10):
    """Table 1: each block is a 1x1 conv c1 -> c2 and a 1x1 conv c2 -> c1."""
    from torch import nn

    return _stack([nn.Sequential(_conv1x1(c1, c2), _conv1x1(c2, c1)) for _ in range(blocks)], c1)


def build_g2(c: int, groups: int, layers: int = 10):
    """Table 2: 1x1 group convs c -> c with ``groups`` groups."""
    return _stack([_conv1x1(c, c, groups) for _ in range(layers)], c)


def _parallel_block(c: int, fragments: int, merge: str):
    import torch
    from torch import nn

    class ParallelFragments(nn.Module):
        """``fragments`` 1x1 convs side by side on one input, merged."""

        def __init__(self) -> None:
            super().__init__()
            if merge == "concat":
                if c % fragments:
                    raise ValueError(f"c={c} does not split into {fragments} concatenated fragments")
                width = c // fragments
                self.branches = nn.ModuleList(_conv1x1(c, width) for _ in range(fragments))
            else:
                width = round(c / math.sqrt(fragments))
                self.branches = nn.ModuleList(_conv1x1(width, width) for _ in range(fragments))
            self.width = c if merge == "concat" else width

        def forward(self, x):
            outputs = [branch(x) for branch in self.branches]
            if merge == "concat":
                return torch.cat(outputs, dim=1)
            total = outputs[0]
            for out in outputs[1:]:
                total = total + out
            return total

    return ParallelFragments()


def build_g3(c: int, fragments: int, layout: str, merge: str = "concat", blocks: int = 10):
    """Table 3: blocks of ``fragments`` 1x1 convs in series or in parallel,
    widths adjusted so each block's FLOPs equal the 1-fragment block's (c -> c)."""
    from torch import nn

    if fragments == 1 or layout == "series":
        width = c if fragments == 1 else round(c / math.sqrt(fragments))
        stack = [nn.Sequential(*(_conv1x1(width, width) for _ in range(fragments))) for _ in range(blocks)]
        return _stack(stack, width)
    stack = [_parallel_block(c, fragments, merge) for _ in range(blocks)]
    return _stack(stack, stack[0].width)


def build_g4(c: int, relu: bool, shortcut: bool, blocks: int = 10, inner_ratio: int = 4):
    """Table 4: ResNet bottleneck units (1x1, 3x3, 1x1) with ReLU and/or the
    shortcut removed."""
    from torch import nn

    inner = max(1, c // inner_ratio)

    class Bottleneck(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(c, inner, 1, bias=False)
            self.conv2 = nn.Conv2d(inner, inner, 3, padding=1, bias=False)
            self.conv3 = nn.Conv2d(inner, c, 1, bias=False)
            self.relu = nn.ReLU(inplace=True) if relu else None

        def forward(self, x):
            out = self.conv1(x)
            if self.relu is not None:
                out = self.relu(out)
            out = self.conv2(out)
            if self.relu is not None:
                out = self.relu(out)
            out = self.conv3(out)
            if shortcut:
                out = out + x
            if self.relu is not None:
                out = self.relu(out)
            return out

    return _stack([Bottleneck() for _ in range(blocks)], c)


# ---------------------------------------------------------------------------
# The paper's tables


def _t1(label: str, gpu: tuple[int, int], gpu_paper, arm: tuple[int, int], arm_paper) -> GuidelineRow:
    return GuidelineRow(
        label, {"gpu": {"c1": gpu[0], "c2": gpu[1]}, "arm": {"c1": arm[0], "c2": arm[1]}}, {"gpu": gpu_paper, "arm": arm_paper}
    )


register_table(
    GuidelineTable(
        number=1,
        guideline="G1",
        claim="equal channel width minimizes memory access cost",
        # c1:c2, GPU (c1, c2) at x1, GPU x1/x2/x4, ARM (c1, c2) at x1, ARM x1/x2/x4
        rows=(
            _t1("1:1", (128, 128), (1480, 723, 232), (32, 32), (76.2, 21.7, 5.3)),
            _t1("1:2", (90, 180), (1296, 586, 206), (22, 44), (72.9, 20.5, 5.1)),
            _t1("1:6", (52, 312), (876, 489, 189), (13, 78), (69.1, 17.9, 4.6)),
            _t1("1:12", (36, 432), (748, 392, 163), (9, 108), (57.6, 15.1, 4.4)),
        ),
        build=build_g1,
        prediction=("1:1", "1:12"),
    )
)


def _t2(groups: int, gpu_c: int, gpu_paper, arm_c: int, arm_paper) -> GuidelineRow:
    return GuidelineRow(
        f"g={groups}", {"gpu": {"c": gpu_c}, "arm": {"c": arm_c}}, {"gpu": gpu_paper, "arm": arm_paper}, {"groups": groups}
    )


register_table(
    GuidelineTable(
        number=2,
        guideline="G2",
        claim="excessive group convolution increases memory access cost",
        # g, GPU c at x1, GPU x1/x2/x4, ARM c at x1, ARM x1/x2/x4
        rows=(
            _t2(1, 128, (2451, 1289, 437), 64, (40.0, 10.2, 2.3)),
            _t2(2, 180, (1725, 873, 341), 90, (35.0, 9.5, 2.2)),
            _t2(4, 256, (1026, 644, 338), 128, (32.9, 8.7, 2.1)),
            _t2(8, 360, (634, 445, 230), 180, (27.8, 7.5, 1.8)),
        ),
        build=build_g2,
        prediction=("g=1", "g=8"),
    )
)


def _t3(label: str, fragments: int, layout: str, gpu_paper, arm_paper) -> GuidelineRow:
    return GuidelineRow(
        label,
        {"gpu": {"c": 128}, "arm": {"c": 64}},
        {"gpu": gpu_paper, "arm": arm_paper},
        {"fragments": fragments, "layout": layout},
    )


register_table(
    GuidelineTable(
        number=3,
        guideline="G3",
        claim="network fragmentation reduces the degree of parallelism",
        # structure, fragments, layout, GPU c=128/256/512, ARM c=64/128/256
        rows=(
            _t3("1-fragment", 1, "series", (2446, 1274, 434), (40.2, 10.1, 2.3)),
            _t3("2-fragment-series", 2, "series", (1790, 909, 336), (38.6, 10.1, 2.2)),
            _t3("4-fragment-series", 4, "series", (752, 745, 349), (38.4, 10.1, 2.3)),
            _t3("2-fragment-parallel", 2, "parallel", (1537, 803, 320), (33.4, 9.1, 2.2)),
            _t3("4-fragment-parallel", 4, "parallel", (691, 572, 292), (35.0, 8.4, 2.1)),
        ),
        build=build_g3,
        prediction=("1-fragment", "4-fragment-parallel"),
    )
)


def _t4(relu: bool, shortcut: bool, gpu_paper, arm_paper) -> GuidelineRow:
    label = f"ReLU {'yes' if relu else 'no'}, shortcut {'yes' if shortcut else 'no'}"
    return GuidelineRow(label, {"gpu": {"c": 32}, "arm": {"c": 32}}, {"gpu": gpu_paper, "arm": arm_paper}, {"relu": relu, "shortcut": shortcut})


register_table(
    GuidelineTable(
        number=4,
        guideline="G4",
        claim="element-wise operations are non-negligible",
        # ReLU, shortcut, GPU c=32/64/128, ARM c=32/64/128
        rows=(
            _t4(True, True, (2427, 2066, 1436), (56.7, 16.9, 5.0)),
            _t4(True, False, (2647, 2256, 1735), (61.9, 18.8, 5.2)),
            _t4(False, True, (2672, 2121, 1458), (57.3, 18.2, 5.1)),
            _t4(False, False, (2842, 2376, 1782), (66.3, 20.2, 5.4)),
        ),
        build=build_g4,
        prediction=("ReLU no, shortcut no", "ReLU yes, shortcut yes"),
    )
)

ASSUMPTIONS = (
    "GPU config: batch 8 (not stated in the paper); ARM config: batch 1; every input 56x56",
    "Table 3 parallel fragments: k branches of 1x1 convs c -> c/k merged by concatenation (--merge add: c' -> c', c' = round(c/sqrt(k)), summed); series fragments: k 1x1 convs c' -> c', c' = round(c/sqrt(k))",
    "Table 4 bottleneck: 1x1 c -> c/4, 3x3 c/4 -> c/4, 1x1 c/4 -> c; ReLU after the first two convs and after the shortcut add; input 56x56",
    "Table 2 ARM g=8 at x1: the paper's c=180 does not divide into 8 groups; lwprof uses 184, the nearest multiple of 8",
    "no BatchNorm, convs without bias, random initialisation",
)
