"""CLI: help, model listing and inspection, and exit code 2 on bad input."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from editrisk.cli import app

runner = CliRunner()


def test_models_list_and_show() -> None:
    out = runner.invoke(app, ["models", "list"])
    assert out.exit_code == 0 and "smollm2-135m" in out.output and "tiny-neox" in out.output
    out = runner.invoke(app, ["models", "show", "tiny-neox"])
    assert out.exit_code == 0
    assert "gpt-neox" in out.output and "dense_4h_to_h" in out.output


def test_bad_model_exits_2_with_one_line() -> None:
    out = runner.invoke(app, ["models", "show", "no-such-model"])
    assert out.exit_code == 2
    assert "unknown model 'no-such-model'" in out.output


def test_generate_tiny() -> None:
    out = runner.invoke(app, ["generate", "tiny-gpt2", "The capital of", "--max-new-tokens", "3"])
    assert out.exit_code == 0 and out.output.startswith("The capital of")


@pytest.mark.slow
def test_show_real_model_has_30_layers() -> None:
    out = runner.invoke(app, ["models", "show", "smollm2-135m"])
    assert out.exit_code == 0
    assert any(
        line.split("│")[1:3] and "layers" in line and "30" in line
        for line in out.output.splitlines()
    )
