"""What the commands print besides their results: progress (plain lines when stdout is not a
terminal), tables that fit an 80-column terminal, and the closing output + next command."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from rich.console import Console
from typer.testing import CliRunner

from editrisk.cli import app
from editrisk.cli._common import table
from editrisk.progress import PlainLines, report_progress, track

runner = CliRunner()
LINE = re.compile(r"^(?P<task>.+): (?P<done>\d+)/(?P<total>\d+) \((?P<pct>\d+)%\) elapsed \d+:\d\d")


def _progress_lines(output: str) -> list[tuple[str, int, int]]:
    return [(m["task"], int(m["done"]), int(m["total"]))
            for m in map(LINE.match, output.splitlines()) if m]  # fmt: skip


def _closing(output: str) -> tuple[str, list[str]]:
    """The closing `output:` value and the `next:`/`or:` commands, which must end the output."""
    lines = output.rstrip("\n").splitlines()
    cmds = []
    while lines and lines[-1].lstrip().startswith(("next:", "or:")):
        cmds.insert(0, lines.pop().split(":", 1)[1].strip())
    assert cmds and lines[-1].startswith("output: "), output
    return lines[-1].removeprefix("output: "), cmds


def test_plain_lines_report_start_every_tenth_and_end() -> None:
    console = Console(width=200, record=True, force_terminal=False)
    show = PlainLines(console)
    for i in range(21):
        show("job", i, 20)
    show("other", 0, 3)
    show("other", 3, 3)
    text = console.export_text()
    got = _progress_lines(text)
    assert [d for t, d, _ in got if t == "job"] == list(range(0, 21, 2))
    assert [(t, d) for t, d, _ in got if t == "other"] == [("other", 0), ("other", 3)]
    assert "ETA" in text.splitlines()[1] and "ETA" not in text.splitlines()[10]


def test_report_progress_is_plain_off_a_terminal_and_silent_when_disabled() -> None:
    console = Console(width=100, record=True, force_terminal=False)
    with report_progress(console) as progress:
        assert isinstance(progress, PlainLines)
        assert list(track([1, 2], "items", progress)) == [1, 2]
    assert _progress_lines(console.export_text()) == [("items", 0, 2), ("items", 1, 2),
                                                      ("items", 2, 2)]  # fmt: skip
    quiet = Console(width=100, record=True, force_terminal=False)
    with report_progress(quiet, enabled=False) as progress:
        progress("x", 1, 2)
    assert quiet.export_text() == ""


def test_report_progress_draws_bars_with_eta_on_a_terminal() -> None:
    console = Console(width=100, record=True, force_terminal=True)
    with report_progress(console) as progress:
        progress("fitting", 3, 4)
    text = console.export_text()
    assert "fitting" in text and "3/4" in text and "ETA" in text and not _progress_lines(text)


def _render(t, width: int = 80) -> list[str]:  # noqa: ANN001
    console = Console(width=width, record=True, force_terminal=False)
    console.print(t)
    return console.export_text().splitlines()


PROMPT = "The Eiffel Tower, the tallest structure of its time, is located in the city of"
TABLES = [  # (headers, wrapped columns, a typical row, cells that must stay on one line)
    (("prompt", "before", "after", "P(new)", "P(true)"),
     ("prompt", "before", "after"),
     (PROMPT, " Paris, France. It is the most", " Rome, Italy. The tower is",
      "0.001 -> 0.954", "0.812 -> 0.010"), ("0.001 -> 0.954", "0.812 -> 0.010")),
    (("method / 1-LI path", "alpha", "efficacy", "paraphrase", "neighbours", "held-out"),
     ("method / 1-LI path",), ("memit (layers 2-6, layer 4 alone)", "0.5", "0.9123", "0.7",
                               "0.8123", "0.5"), ("0.9123", "0.8123", "neighbours")),
    (("metric", "unedited", "edited"), (), ("generalization.prob_compare", "0.5123", "0.9981"),
     ("generalization.prob_compare",)),
    (("state", "shift", "severity", "mean_edit_distance", "knowledge.prob_compare",
      "edit.prob_compare"), (), ("unedited", "paraphrase", "3", "14", "0.5123", "0.4988"),
     ("unedited", "paraphrase", "0.5123", "0.4988")),  # long headers stack
]  # fmt: skip


@pytest.mark.parametrize(("headers", "wrap", "row", "whole"), TABLES)
def test_tables_fit_80_columns_without_one_word_per_line(headers, wrap, row, whole) -> None:  # noqa: ANN001
    t = table(*headers, wrap=wrap, title="a title")
    t.add_row(*row)
    lines = _render(t)
    assert max(map(len, lines)) <= 80
    for cell in whole:
        assert any(cell in line for line in lines), f"{cell!r} was split:\n" + "\n".join(lines)
    cells = [line.split("│")[1:-1] for line in lines if line.startswith("│")]
    for i, (col, text) in enumerate(zip(headers, row)):  # some line of a wrapped cell has 2+ words
        if col in wrap and len(text.split()) > 2:
            assert any(len(c[i].split()) >= 2 for c in cells), "\n".join(lines)


def _requests(tmp_path: Path) -> Path:
    path = tmp_path / "reqs.jsonl"
    path.write_text(
        '{"subject": "Paris", "prompt": "{} is the capital of", "target_new": "Italy", '
        '"target_true": "France"}\n'
        '{"subject": "Tokyo", "prompt": "{} is the capital of", "target_new": "China"}\n'
    )
    return path


def test_eval_reports_progress_as_lines_and_ends_with_the_next_command(tmp_path: Path) -> None:
    reqs, run = _requests(tmp_path), tmp_path / "ev"
    out = runner.invoke(app, ["eval", "tiny-gpt2", "--requests", str(reqs), "--run-dir",
                              str(run), "--perplexity"])  # fmt: skip
    assert out.exit_code == 0, out.output
    assert "\x1b[" not in out.output  # no terminal codes off a terminal
    assert _progress_lines(out.output) == [("evaluate", 0, 2), ("evaluate", 1, 2),
                                           ("evaluate", 2, 2)]  # fmt: skip
    where, cmds = _closing(out.output)
    assert Path(where) == run and (run / "rows.jsonl").is_file()
    assert cmds[0].startswith(f"editrisk edit tiny-gpt2 --request {reqs} --save-delta")
    assert cmds[1].startswith(f"editrisk eval tiny-gpt2 --requests {reqs} --delta")


def test_run_reports_job_progress_and_points_at_analyze(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("EDITRISK_CACHE", str(tmp_path / "cache"))
    cfg = {
        "name": "progress", "model": "tiny-gpt2",
        "data": {"source": "worldfacts", "n_edits": 3, "n_heldout": 2, "filter_known": False},
        "protocol": {"name": "sequential", "batch_size": 1},
        "schedule": {"general_every": 3},
        "evaluation": {"perplexity_sentences": 2, "batch_size": 8},
        "diagnostics": {"spectral_iters": 2},
        "methods": [{"name": "ft", "hparams": {"layers": [1], "steps": 1, "lr": 0.05}}],
    }  # fmt: skip
    path, run = tmp_path / "c.yaml", tmp_path / "my run"
    path.write_text(yaml.safe_dump(cfg))
    out = runner.invoke(app, ["run", str(path), "--run-dir", str(run)])
    assert out.exit_code == 0, out.output
    lines = _progress_lines(out.output)
    assert lines[0] == ("all jobs", 0, 1) and lines[-1] == ("all jobs", 1, 1)
    jobs = [x for x in lines if x[0] != "all jobs"]
    assert jobs and jobs[-1][1] == jobs[-1][2] == 3  # the job's edits, all done
    where, cmds = _closing(out.output)
    assert Path(where) == run
    assert cmds == [f"editrisk analyze '{run}'", f"editrisk report '{run}'"]  # quoted: a space
    out = runner.invoke(app, ["run", str(path), "--run-dir", str(run), "--no-progress"])
    assert out.exit_code == 0 and not _progress_lines(out.output)  # resumed: nothing to do


def test_edit_table_fits_and_ends_with_eval_and_export_of_the_saved_delta(tmp_path: Path) -> None:
    reqs, saved = _requests(tmp_path), tmp_path / "d.safetensors"
    out = runner.invoke(app, ["edit", "tiny-gpt2", "--editor", "ft", "--set", "steps=1",
                              "--request", str(reqs), "--save-delta", str(saved)])  # fmt: skip
    assert out.exit_code == 0, out.output
    shown = re.sub(r"[\x00-\x09\x0b-\x1f\x7f]", "", out.output)  # random tiny-model text
    rows = [line for line in shown.splitlines() if line[:1] in "┏┃┡│└"]
    assert rows and max(map(len, rows)) <= 80  # CliRunner's console: 80 columns
    assert len(re.findall(r"│ \d\.\d{3} -> \d\.\d{3} │", out.output)) == 2  # P(new), P(true)
    where, cmds = _closing(out.output)
    assert Path(where) == saved and saved.is_file()
    assert cmds == [f"editrisk eval tiny-gpt2 --requests {reqs} --delta {saved}",
                    f"editrisk export tiny-gpt2 --delta {saved} --out edited-model"]  # fmt: skip
