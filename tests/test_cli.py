import csv
import io
import json
import subprocess
import sys

from typer.testing import CliRunner

from lwprof import __version__
from lwprof.cli import app

runner = CliRunner()


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"lwprof {__version__}"


def test_help_and_version_do_not_import_heavy_packages():
    # What keeps `lwprof --help` instant: no torch/onnxruntime/matplotlib on that path.
    code = (
        "import sys\n"
        "from lwprof.cli import app\n"
        "for argv in (['--help'], ['--version'], ['zoo', '--help']):\n"
        "    try:\n"
        "        app(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "heavy = sorted({'torch', 'onnxruntime', 'matplotlib', 'pandas', 'onnx'} & set(sys.modules))\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out


def test_python_dash_m_entry_point():
    result = subprocess.run([sys.executable, "-m", "lwprof", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == f"lwprof {__version__}"


def test_zoo_csv_is_clean_and_full_precision():
    result = runner.invoke(app, ["zoo", "mobilenet_v2_1*", "--format", "csv"])
    assert result.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["name"] for r in rows] == ["mobilenet_v2_100", "mobilenet_v2_140"]
    assert rows[0]["params"] == "3504872"
    assert rows[0]["reference_macs"] == "300774272"
    assert rows[0]["input_shape"] == "3x224x224"
    assert rows[0]["published_top1_dataset"] == "ImageNet-1k"


def test_zoo_names_the_dataset_of_a_non_imagenet_top1():
    result = runner.invoke(app, ["zoo", "addernet", "--format", "csv"])
    assert result.exit_code == 0
    (row,) = csv.DictReader(io.StringIO(result.stdout))
    assert (row["published_top1_percent"], row["published_top1_dataset"]) == ("91.84", "CIFAR-10")


def test_zoo_json_carries_metadata():
    result = runner.invoke(app, ["zoo", "mobilenetv2", "--format", "json"])
    assert result.exit_code == 0
    (record,) = json.loads(result.stdout)
    assert record["name"] == "mobilenet_v2_100"
    assert record["aliases"] == ["mobilenetv2"]
    assert record["paper"]["arxiv"] == "1801.04381"
    assert record["reference"]["params"] == 3_504_872
    assert record["published"]["top1"] == 72.0


def test_zoo_table_lists_every_model():
    from lwprof.models import list_models

    result = runner.invoke(app, ["zoo"], env={"COLUMNS": "250"})
    assert result.exit_code == 0
    for name in list_models():
        assert name in result.stdout


def test_zoo_glob_without_match_is_empty_not_an_error():
    result = runner.invoke(app, ["zoo", "nomatch*", "--format", "json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == []
    assert "no zoo model matches" in result.stderr


def test_zoo_unknown_name_is_exit_2_with_suggestions():
    result = runner.invoke(app, ["zoo", "mobilenet_v2_130"])
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert "unknown model 'mobilenet_v2_130'" in lines[0]
    assert "mobilenet_v2_140" in lines[0]


def test_a_table_leaves_out_columns_empty_in_every_row(capsys):
    from lwprof.reports.console import Column, OutputFormat, emit, milliseconds

    records = [{"model": "a", "median_s": 0.0015, "skipped": ""}, {"model": "b", "median_s": None, "skipped": ""}]
    columns = [Column("model", "model"), Column("median_s", "median ms", milliseconds), Column("skipped", "skipped")]
    emit(records, columns, OutputFormat.table)
    table = capsys.readouterr().out
    assert "median ms" in table and "1.500" in table and "skipped" not in table
    emit(records, columns, OutputFormat.csv)
    assert capsys.readouterr().out.splitlines()[0] == "model,median_s,skipped"  # CSV keeps every column
