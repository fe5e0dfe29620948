"""`lwprof profile MODEL --analytic --format csv` is byte-identical to the
captured outputs in fixtures/analytic_csv/ (taken before the package was
reorganised, commit 02ca134): a refactor must not change a single count.
A model added after the capture has no fixture and is checked by test_zoo."""

import gzip
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lwprof.cli import app

FIXTURES = sorted((Path(__file__).resolve().parent / "fixtures" / "analytic_csv").glob("*.csv.gz"))


def test_every_captured_model_is_still_in_the_zoo():
    from lwprof.models import list_models

    assert len(FIXTURES) == 44
    assert {path.name.removesuffix(".csv.gz") for path in FIXTURES} <= set(list_models())


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda path: path.name.removesuffix(".csv.gz"))
def test_analytic_csv_is_byte_identical(fixture):
    name = fixture.name.removesuffix(".csv.gz")
    result = CliRunner().invoke(app, ["profile", name, "--analytic", "--format", "csv"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout == gzip.decompress(fixture.read_bytes()).decode()
