"""Kill-and-resume: a run killed (SIGKILL) mid-run and started again with the same command
ends with exactly the rows of an uninterrupted run: same numbers, no loss, no duplicates."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from editrisk import EditriskError
from editrisk.engine import load_config, resolve, run_study, select_methods

FAST = dict(
    layers=[1],
    steps=8,
    lr=1.0,
    weight_decay=0.0,
    kl_factor=0.0,
    clamp_norm_factor=50.0,
    corpus_tokens=1024,
    prefixes=[],
    mom2_weight=1.0,
)
CONFIG = {
    "name": "resume",
    "model": "tiny-gpt2",
    "grid": {"seed": [3]},
    "data": {"source": "worldfacts", "n_edits": 8, "n_heldout": 6, "filter_known": False},
    "protocol": {"name": "sequential", "batch_size": 1},
    "schedule": {"retention_every": 3, "general_every": 4},
    "evaluation": {"perplexity_sentences": 4, "batch_size": 16},
    "diagnostics": {"spectral_iters": 4},
    "methods": [
        {"name": "d4s", "hparams": FAST},
        {"label": "ft", "name": "ft", "hparams": {"layers": [1], "steps": 4, "lr": 0.05}},
    ],
}
CLI = [sys.executable, "-c", "from editrisk.cli import main; main()"]


def _rows(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "rows.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.startswith("time.")} for r in rows]


def _steps_done(run: Path) -> int:
    p = run / "rows.jsonl"
    if not p.exists():
        return 0
    return sum('"kind": "timing"' in line for line in p.read_text().splitlines())


def _close(a: object, b: object) -> bool:
    """Equal, floats up to rounding (1e-5 relative)."""
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-7) or (a != a and b != b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    return a == b


# Editors against the decline: PRUNE (memory across steps) and RECT post-process a base
# editor's update; GRACE's edits are codebooks, composed across steps and checkpointed;
# ENCORE is MEMIT with early stopping and a norm constraint; NSE rewinds its own total;
# UltraEdit carries its running feature statistics across steps.
MEMIT_FAST = {k: v for k, v in FAST.items() if k != "layers"}
LIFELONG = [
    {"name": "prune", "hparams": {"base": "memit", "layers": [1], "base_hparams": MEMIT_FAST}},
    {"name": "rect", "hparams": {"base": "ft", "layers": [1], "base_hparams": {"steps": 4}}},
    {"name": "grace", "hparams": {"layers": [1], "steps": 8}},
    {"name": "encore", "hparams": {**FAST, "stop_on": "argmax"}},
    {"name": "nse", "hparams": FAST},
    {"name": "ultraedit", "hparams": {"layers": [1], "lr": 0.01, "positions": "all"}},
]


@pytest.mark.parametrize(
    ("workers", "methods"),
    [(1, CONFIG["methods"]), (2, CONFIG["methods"]), (1, LIFELONG)],
    ids=["1", "2", "lifelong"],
)
def test_killed_run_resumes_to_identical_rows(tmp_path, monkeypatch, workers, methods) -> None:
    """With `workers` 2 both methods run at once in forked processes: killing the parent
    kills them too, and the resumed run still ends with the rows of an uninterrupted one."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("EDITRISK_CACHE", str(cache))
    cfg_path = tmp_path / "run.yaml"
    cfg_path.write_text(yaml.safe_dump({**CONFIG, "methods": methods}))
    cfg = load_config(cfg_path)
    whole = tmp_path / "whole"
    run_study(cfg, whole)  # uninterrupted, in this process (also fills the shared caches)

    killed = tmp_path / "killed"
    cmd = [*CLI, "run", str(cfg_path), "--run-dir", str(killed), "--no-progress"]
    cmd += ["--workers", str(workers)]
    env = {**os.environ, "EDITRISK_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while _steps_done(killed) < 4 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, f"run ended before it could be killed: {proc.stderr.read()}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(0.5)  # forked workers die with their parent
    partial = _steps_done(killed)
    time.sleep(0.5)
    assert _steps_done(killed) == partial, "a worker kept writing after its parent was killed"
    assert 4 <= partial < 16

    resumed = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    got, want = _rows(killed), _rows(whole)
    keys = [r["key"] for r in got]
    assert len(keys) == len(set(keys)), "duplicate rows after resume"
    assert sorted(keys) == sorted(r["key"] for r in want), "rows lost or extra"
    by_key = {r["key"]: r for r in want}
    for r in got:
        # Same numbers up to float reduction order: the uninterrupted run ran in this
        # process (2 threads), the killed and resumed one in a 1-thread subprocess.
        assert _close(r, by_key[r["key"]]), f"row {r['key']} differs after resume"
    run_study(cfg, killed)  # rerunning a finished run adds nothing
    assert len(_rows(killed)) == len(got)


def test_resume_refuses_a_different_config(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("EDITRISK_CACHE", str(tmp_path / "cache"))
    small = {**CONFIG, "data": {**CONFIG["data"], "n_edits": 2}, "methods": ["ft"]}
    p = tmp_path / "a.yaml"
    p.write_text(yaml.safe_dump(small))
    run_study(load_config(p), tmp_path / "run")
    p.write_text(yaml.safe_dump({**small, "grid": {"seed": [4]}}))
    with pytest.raises(EditriskError, match=r"different config \(grid.seed: \[3\] there"):
        run_study(load_config(p), tmp_path / "run")


def _config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """CONFIG written to a file, with the cache in `tmp_path`."""
    monkeypatch.setenv("EDITRISK_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(CONFIG))
    return path


def test_parallel_workers_write_the_rows_of_a_serial_run(tmp_path, monkeypatch) -> None:
    cfg = load_config(_config_file(tmp_path, monkeypatch))
    serial, parallel = tmp_path / "serial", tmp_path / "parallel"
    run_study(cfg, serial)
    run_study(cfg, parallel, workers=2)
    got, want = _rows(parallel), _rows(serial)
    assert len(got) == len(want) and {r["method"] for r in got} == {"d4s", "ft"}
    by_key = {r["key"]: r for r in want}
    assert sorted(r["key"] for r in got) == sorted(by_key)
    for r in got:
        assert _close(r, by_key[r["key"]]), f"row {r['key']} differs in the parallel run"


def test_only_runs_a_subset_with_the_rows_of_the_whole_run(tmp_path, monkeypatch) -> None:
    from typer.testing import CliRunner

    from editrisk.cli import app

    cfg_path = _config_file(tmp_path, monkeypatch)
    whole, part = tmp_path / "whole", tmp_path / "part"
    run_study(load_config(cfg_path), whole)
    runner = CliRunner()
    args = ["run", str(cfg_path), "--run-dir", str(part), "--no-progress"]
    res = runner.invoke(app, [*args, "--only", "nope"])
    assert res.exit_code == 2 and "['d4s', 'ft']" in res.output and not part.exists()
    res = runner.invoke(app, [*args, "--only", "ft"])
    assert res.exit_code == 0, res.output
    got = _rows(part)
    want = {r["key"]: r for r in _rows(whole) if r["method"] == "ft"}
    assert {r["method"] for r in got} == {"ft"} and sorted(r["key"] for r in got) == sorted(want)
    assert all(_close(r, want[r["key"]]) for r in got)
    # The other method joins the same directory: together they are the whole run.
    res = runner.invoke(app, [*args, "--only", "d4s"])
    assert res.exit_code == 0, res.output
    assert [m["label"] for m in yaml.safe_load((part / "config.yaml").read_text())["methods"]] == [
        "ft",
        "d4s",
    ]
    got, want = _rows(part), {r["key"]: r for r in _rows(whole)}
    assert sorted(r["key"] for r in got) == sorted(want)
    assert all(_close(r, want[r["key"]]) for r in got)


def test_a_method_joins_a_run_only_under_a_new_label_or_unchanged(tmp_path, monkeypatch) -> None:
    path = _config_file(tmp_path, monkeypatch)
    raw = {**CONFIG, "data": {**CONFIG["data"], "n_edits": 2}}
    cfg = resolve(raw, str(path))
    run = tmp_path / "run"
    run_study(select_methods(cfg, ["ft"]), run)
    changed = {**raw["methods"][1], "hparams": {**raw["methods"][1]["hparams"], "lr": 0.5}}
    with pytest.raises(EditriskError, match="different config"):
        run_study(resolve({**raw, "methods": [changed]}), run)
    with pytest.raises(EditriskError, match="different config"):  # same methods, other seed
        run_study(select_methods(resolve({**raw, "grid": {"seed": [9]}}), ["d4s"]), run)
    assert [m["label"] for m in yaml.safe_load((run / "config.yaml").read_text())["methods"]] == [
        "ft"
    ]


def test_one_writer_per_run_directory(tmp_path, monkeypatch) -> None:
    """A second process cannot write a run directory another one is writing."""
    from editrisk.engine import RunDir

    cfg = load_config(_config_file(tmp_path, monkeypatch))
    run = RunDir(tmp_path / "run")
    with run.writer(), pytest.raises(EditriskError, match="another editrisk process"):
        run_study(cfg, run.path)
    assert not (run.path / "rows.jsonl").exists()
