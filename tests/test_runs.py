"""Run directory primitives: config/environment at start, append-only rows, exports."""

from __future__ import annotations

import json

import pytest

from editrisk import EditriskError
from editrisk.engine.store import ResultStore, RunDir


def test_rows_append_and_read(tmp_path) -> None:
    store = ResultStore(tmp_path / "rows.jsonl")
    store.append({"step": 0, "metric": "efficacy", "value": 1.0})
    store.append([{"step": 1, "metric": "efficacy", "value": 0.5, "extra": {"a": 1}}])
    rows = store.rows()
    assert [r["step"] for r in rows] == [0, 1]
    assert rows[1]["extra"] == {"a": 1}


def test_torn_last_row_is_ignored_then_repaired(tmp_path) -> None:
    store = ResultStore(tmp_path / "rows.jsonl")
    store.append({"i": 0})
    with open(store.path, "a") as f:
        f.write('{"i": 1, "val')  # a writer killed mid-row
    assert store.rows() == [{"i": 0}]
    store.append({"i": 2})
    assert store.rows() == [{"i": 0}, {"i": 2}]
    assert store.path.read_text().count("\n") == 2


def test_corrupt_middle_row_names_record(tmp_path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text('{"i": 0}\nnot json\n{"i": 2}\n')
    with pytest.raises(EditriskError, match="record 2"):
        ResultStore(path).rows()


def test_run_dir_records_start_and_refuses_other_config(tmp_path) -> None:
    run = RunDir(tmp_path / "run")
    run.start({"editor": "rome", "seed": 0}, {"name": "tiny-gpt2", "fingerprint": "abc"})
    env = json.loads((run.path / "environment.json").read_text())
    assert env["packages"]["torch"]
    assert json.loads((run.path / "model.json").read_text())["fingerprint"] == "abc"
    assert run.config() == {"editor": "rome", "seed": 0}
    run.start({"seed": 0, "editor": "rome"})  # same config: resume is fine
    run.start({"editor": "ft", "seed": 0})  # no row yet: a corrected config takes its place
    assert run.config() == {"editor": "ft", "seed": 0}
    run.results.append({"kind": "summary", "x": 1.0})
    with pytest.raises(EditriskError, match="different config"):
        run.start({"editor": "memit", "seed": 0})
    assert run.config() == {"editor": "ft", "seed": 0}


def test_non_finite_numbers_are_stored_as_null_and_named(tmp_path) -> None:
    store = ResultStore(tmp_path / "rows.jsonl")
    store.append({"kind": "summary", "a": 1.0, "b": float("nan"), "c": [1.0, float("inf")]})
    line = store.path.read_text()
    assert "NaN" not in line and "Infinity" not in line
    assert store.rows() == [
        {"kind": "summary", "a": 1.0, "b": None, "c": [1.0, None], "nonfinite": ["b", "c"]}
    ]


def test_exports(tmp_path) -> None:
    run = RunDir(tmp_path)
    run.results.append([{"a": 1, "b": "x"}, {"a": 2, "c": [1, 2]}])
    paths = run.export()
    csv_text = (tmp_path / "rows.csv").read_text().splitlines()
    assert csv_text[0] == "a,b,c" and len(csv_text) == 3
    pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    assert tmp_path / "rows.parquet" in paths
    assert pq.read_table(tmp_path / "rows.parquet").num_rows == 2


def test_writes_stay_under_their_root(tmp_path) -> None:
    """The one write helper refuses a name that leads outside its folder, writing nothing."""
    from editrisk.files import atomic_write_text, under

    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    for name in ("../escape.txt", str(tmp_path / "escape.txt"), "a/../../escape.txt"):
        with pytest.raises(EditriskError, match="outside"):
            run.write_text(name, "x")
        with pytest.raises(EditriskError, match="outside"):
            atomic_write_text(run.path / name, "x", root=run.path)
    assert not (tmp_path / "escape.txt").exists()
    assert under(run.path, "checkpoints", "ft__L1") == (run.path / "checkpoints/ft__L1").resolve()
    assert run.write_text("a/b.txt", "y").read_text() == "y"
