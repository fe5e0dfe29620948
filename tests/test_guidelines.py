"""ShuffleNet V2 guideline benchmarks: exact counts per configuration, FLOPs
equalisation, and the verdict logic on synthetic measurements."""

import pytest

import lwprof
from lwprof.core.stats import Stats
from lwprof.models.guidelines import configs, get_table, table_numbers
from lwprof.reports.guideline_report import FAILS, HOLDS, INCONCLUSIVE, compare, overall


def count(cfg):
    net = cfg.build()
    return lwprof.analyze(net, input_shape=cfg.input_shape(1))


def conv_rows(profile):
    return [layer for layer in profile.layers if layer.macs]


def test_table1_gpu_1to1_exact():
    (cfg,) = [c for c in configs(1, "gpu", (1,)) if c.row == "1:1"]
    profile = count(cfg)
    convs = conv_rows(profile)
    assert len(convs) == 20  # 10 blocks of two 1x1 convs
    for layer in convs:
        assert layer.macs == 51_380_224  # 56*56*128*128
        assert layer.memory_bytes == 819_200 * 4  # 56*56*(128+128) + 128*128 elements, fp32


def test_table1_gpu_1to12_exact():
    (cfg,) = [c for c in configs(1, "gpu", (1,)) if c.row == "1:12"]
    convs = conv_rows(count(cfg))
    assert convs[0].macs == 48_771_072  # 56*56*36*432
    assert convs[0].memory_bytes == 1_483_200 * 4  # 56*56*(36+432) + 36*432 elements
    assert convs[1].macs == 48_771_072  # 56*56*432*36, the way back


def test_table2_group_conv_exact():
    (cfg,) = [c for c in configs(2, "gpu", (1,)) if c.row == "g=8"]
    layer = conv_rows(count(cfg))[0]
    assert layer.macs == 50_803_200  # 56*56*360*(360/8)
    assert layer.memory_bytes == (3136 * 720 + 360 * 45) * 4  # hw(c1+c2) + c1*c2/g = 2,274,120 elements


def test_table2_arm_g8_width_is_divisible():
    (cfg,) = [c for c in configs(2, "arm", (1,)) if c.row == "g=8"]
    assert cfg.widths == {"c": 184}  # the paper's 180 does not split into 8 groups
    assert [c.widths["c"] for c in configs(2, "arm", (2,))] == [128, 180, 256, 360]  # the paper's x2 widths


def test_table4_elementwise_ops_add_memory_not_macs():
    rows = {c.row: count(c).totals for c in configs(4, "arm", (1,))}
    macs = {totals["macs"] for totals in rows.values()}
    assert macs == {34_119_680}  # 10 x 56*56*(32*8 + 8*8*9 + 8*32) = 10 x 3,411,968
    full, bare = rows["ReLU yes, shortcut yes"], rows["ReLU no, shortcut no"]
    # 10 units x (3 ReLUs in place: 2*(8+8+32) channels + add: 3*32 channels) x 56*56 x 4 bytes
    assert full["memory_bytes"] - bare["memory_bytes"] == 10 * (2 * 48 + 96) * 3136 * 4


@pytest.mark.parametrize("table", table_numbers())
@pytest.mark.parametrize("config", ["gpu", "arm"])
def test_flops_are_equalised_within_each_table(table, config):
    for scale in (1, 2, 4):
        flops = [count(c).totals["macs"] for c in configs(table, config, (scale,))]
        spread = max(flops) / min(flops) - 1
        # integer widths: the paper's own leave 5.8% (Table 1 ARM: 2*22*44 = 1,936 vs 2*32*32 = 2,048 per pixel)
        assert spread < 0.06, (table, config, scale, flops)


@pytest.mark.parametrize("table", [1, 2, 3])
def test_memory_access_ordering_matches_the_guideline(table):
    spec = get_table(table)
    faster, slower = spec.prediction
    by_row = {c.row: count(c).totals["memory_bytes"] for c in configs(table, "arm", (1,))}
    assert by_row[faster] < by_row[slower]


def stats(median, spread, n=21):
    # n samples evenly spread around the median
    return Stats.of([median + spread * (i - n // 2) / (n // 2) for i in range(n)])


def test_verdict_clear_win_clear_loss_overlap():
    fast, slow = stats(1.0, 0.05), stats(2.0, 0.05)
    assert compare(fast, slow, 1, "a", "b").verdict == HOLDS
    assert compare(slow, fast, 1, "a", "b").verdict == FAILS
    assert compare(stats(1.0, 0.5), stats(1.1, 0.5), 1, "a", "b").verdict == INCONCLUSIVE
    comparison = compare(fast, slow, 2, "1:1", "1:12")
    assert comparison.speedup == 2.0
    assert "x2: 1:1 1000.000 ms" in comparison.describe()


def test_overall_verdict_over_scales():
    assert overall([HOLDS, INCONCLUSIVE, HOLDS]) == HOLDS
    assert overall([FAILS, INCONCLUSIVE]) == FAILS
    assert overall([HOLDS, FAILS]) == INCONCLUSIVE
    assert overall([INCONCLUSIVE]) == INCONCLUSIVE


# ---------------------------------------------------------------------------
# The command, end to end on tiny budgets

import json  # noqa: E402

from typer.testing import CliRunner  # noqa: E402

from lwprof.cli import app  # noqa: E402


def run_cli(*args):
    return CliRunner().invoke(app, ["guidelines", *args], env={"COLUMNS": "250"})


def test_quick_run_writes_tables_json_and_resumes(tmp_path):
    out = tmp_path / "g"
    args = ["--quick", "--tables", "2", "--min-time", "0", "--max-time", "0.02", "--out", str(out), "--cache-dir", str(tmp_path / "cache")]
    result = run_cli(*args, "--format", "json")
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["config"] == "arm" and payload["scales"] == [1]
    assert {(r["row"], r["backend"]) for r in payload["results"]} == {
        (row, backend) for row in ("g=1", "g=2", "g=4", "g=8") for backend in ("torch", "onnxruntime")
    }
    (first,) = [r for r in payload["results"] if r["row"] == "g=1" and r["backend"] == "torch"]
    assert first["macs"] == 128_450_560  # 10 x 56*56*64*64
    assert first["measured_normalized"] == 1.0 and first["paper_normalized"] == 1.0
    assert {v["guideline"] for v in payload["verdicts"]} == {"G2"}
    assert all(v["verdict"] in ("holds", "does not hold", "inconclusive") for v in payload["verdicts"])
    assert any("batch 8" in a for a in payload["assumptions"])
    assert payload["environment"]["cpu_model"]
    assert (out / "table2.csv").read_text().splitlines()[0].startswith("table,row,config,scale,backend")
    assert (out / "table2.png").stat().st_size > 0 and (out / "table2.svg").stat().st_size > 0
    lines = (out / "results.jsonl").read_text().splitlines()
    assert len(lines) == 8
    # a second run resumes: nothing is measured again
    again = run_cli(*args, "--format", "csv")
    assert again.exit_code == 0, again.stderr
    assert "resumed: 8 measurements" in again.stderr
    assert (out / "results.jsonl").read_text().splitlines() == lines
    assert len(again.stdout.strip().splitlines()) == 1 + 8


def test_bad_table_and_cuda_are_one_line_errors(tmp_path):
    result = run_cli("--tables", "5", "--out", str(tmp_path))
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0 and "--tables '5'" in result.stderr


def test_a_comparison_decided_by_page_faults_says_so():
    fast = Stats.of([0.001] * 5)
    slow = Stats.of([0.002] * 5)
    # 5,132 against 7 faults per pass: one process page-faults its activations, the other does not
    decided = compare(fast, slow, 2, "a", "b", (7.0, 5_132.0))
    assert decided.allocator_decides and "the allocator decides" in decided.describe()
    assert not compare(fast, slow, 2, "a", "b", (2_000.0, 2_600.0)).allocator_decides  # same state
    assert not compare(fast, slow, 2, "a", "b", (2.0, 90.0)).allocator_decides  # neither significant
    assert not compare(fast, slow, 2, "a", "b").allocator_decides  # not counted
