"""CLI: help, model listing and inspection, and exit code 2 on bad input."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import editrisk
from editrisk.cli import app, main

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


def test_version() -> None:
    """--version prints the installed distribution's version (package metadata)."""
    from importlib.metadata import version

    out = runner.invoke(app, ["--version"])
    assert out.exit_code == 0 and out.output.strip() == f"editrisk {version('editrisk')}"
    assert editrisk.__version__ == version("editrisk")


INLINE = ["--subject", "Paris", "--prompt", "{} is in", "--target-new", "Rome"]


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["--set", "layers=[1"], ["--set layers", "not valid YAML"]),
        (["--set", "layers=3"], ["'layers'", "list of int", "3"]),
        (["--set", "layers=abc"], ["'layers'", "'abc'"]),
        (["--set", "steps=[2]"], ["'steps'", "int"]),
        (["--set", "garbage"], ["--set", "'garbage'"]),
        (["--editor", "nope"], ["unknown editor 'nope'"]),
        (["--editor", "rewrite"], ["'rewrite' edits vision models", "rome"]),
        (["--hparams", "{bad_yaml}"], ["hp.yaml", "not valid YAML", "line 2"]),
    ],
)
def test_edit_bad_hyperparameters_exit_2_with_one_line(
    tmp_path: Path, args: list[str], names: list[str]
) -> None:
    """A slip in --set or --hparams is refused by name before any model loads, not a traceback."""
    hp = tmp_path / "hp.yaml"
    hp.write_text("layers: [1\n")
    args = [str(hp) if a == "{bad_yaml}" else a for a in args]
    out = runner.invoke(app, ["edit", "no-such-model", *args, *INLINE])
    lines = out.stderr.strip().splitlines()
    assert out.exit_code == 2 and len(lines) == 1, out.output
    assert lines[0].startswith("editrisk: error: ")
    for name in names:
        assert name in lines[0]
    assert "no-such-model" not in lines[0]  # refused before the model was looked up


def run_main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, args: list[str]):  # noqa: ANN201
    """Run the `editrisk` script's entry point in-process: (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["editrisk", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["edit"], ["Missing argument 'model'", "editrisk edit --help"]),
        (["edit", "tiny-gpt2", "--bogus"], ["--bogus"]),
        (["generate", "tiny-gpt2", "x", "--max-new-tokens", "0"], ["--max-new-tokens"]),
        (["vision", "corrupt", "--size", "2"], ["--size", "editrisk vision corrupt --help"]),
        (["edti"], ["No such command 'edti'", "'edit'"]),
        (["generate", "no-such-model", "x"], ["unknown model 'no-such-model'"]),
    ],
)
def test_usage_errors_are_one_line_exit_2(monkeypatch, capsys, args: list[str], names) -> None:  # noqa: ANN001
    """The `editrisk` script (main) prints click's usage errors as one line, not a box."""
    code, out, err = run_main(monkeypatch, capsys, args)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and out == "", err
    assert lines[0].startswith("editrisk: error: ")
    for name in names:
        assert name in lines[0]


def test_script_exit_codes(monkeypatch, capsys) -> None:  # noqa: ANN001
    """main() keeps the exit codes: 0 for --version, 2 with the help for no arguments."""
    code, out, _ = run_main(monkeypatch, capsys, ["--version"])
    assert code == 0 and out.strip() == f"editrisk {editrisk.__version__}"
    code, out, err = run_main(monkeypatch, capsys, [])
    assert code == 2 and "Commands" in out and err == ""


def test_eval_unknown_shift_kind_exits_2_before_writing(tmp_path: Path) -> None:
    """Refused by name even when no request has a true target to perturb; no run directory."""
    reqs = tmp_path / "r.jsonl"
    reqs.write_text('{"subject": "Paris", "prompt": "{} is in", "target_new": "Rome"}\n')
    run = tmp_path / "run"
    args = ["eval", "tiny-gpt2", "--requests", str(reqs), "--run-dir", str(run), "--shifts"]
    out = runner.invoke(app, [*args, "--shift-kinds", "typo,nope"])
    lines = out.stderr.strip().splitlines()
    assert out.exit_code == 2 and len(lines) == 1 and "'nope'" in lines[0], out.output
    assert not run.exists()


def test_unknown_device_and_unreadable_delta_exit_2(tmp_path: Path) -> None:
    out = runner.invoke(app, ["generate", "tiny-gpt2", "x", "--device", "tpu"])
    lines = out.stderr.strip().splitlines()
    assert out.exit_code == 2 and len(lines) == 1 and "unknown device 'tpu'" in lines[0]
    junk = tmp_path / "junk.safetensors"
    junk.write_text("not a safetensors file\n")
    out = runner.invoke(
        app, ["export", "tiny-gpt2", "--delta", str(junk), "--out", str(tmp_path / "m")]
    )
    lines = out.stderr.strip().splitlines()
    assert out.exit_code == 2 and len(lines) == 1, out.output
    assert "junk.safetensors: unreadable safetensors file" in lines[0]
    assert not (tmp_path / "m").exists()


def test_layer_out_of_range_exits_2_with_one_line() -> None:
    out = runner.invoke(app, ["edit", "tiny-gpt2", "--set", "layers=[99]", *INLINE])
    lines = out.stderr.strip().splitlines()
    assert out.exit_code == 2 and len(lines) == 1 and "layer 99" in lines[0]
