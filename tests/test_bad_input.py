"""Bad input through the real `editrisk` entry point: every case exits 2 with one line that
names the file, record and field (or the option), prints no traceback, and writes or changes
nothing (the workspace, the cache and the working directory are compared before and after).
Also: a read-only run directory, two runs at once on one directory."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import save_file

from editrisk.cli import main
from editrisk.delta import Delta

REQ = {"subject": "France", "prompt": "The capital of {} is", "target_new": "Rome",
       "target_true": "Paris", "id": "fr"}  # fmt: skip
FACTS = [
    REQ,
    {
        "subject": "Peru",
        "prompt": "The capital of {} is",
        "target_new": "Oslo",
        "target_true": "Lima",
        "id": "pe",
    },
    {
        "subject": "Chad",
        "prompt": "{} is located in",
        "target_new": "Asia",
        "target_true": "Africa",
        "id": "td",
    },
]
FT = {"layers": [1], "steps": 2}
LONG = " ".join(["France"] * 300)  # over tiny-gpt2's 128 positions
W = "transformer.h.1.mlp.c_proj.weight"  # tiny-gpt2: (64, 32)
INLINE = ["--subject", "France", "--prompt", "The capital of {} is", "--target-new", "Rome"]
FMT = {"format": "editrisk.delta/1", "metadata": "{}"}
CLI = [sys.executable, "-c", "from editrisk.cli import main; main()"]
WS = "@WS@"  # the workspace in argv and files, filled in when a case runs
CONFIG_FILES: dict[str, str] = {}  # configs/NAME.yaml -> text, written into the workspace


def _config(**over: object) -> dict:
    cfg = {"name": "bad", "model": "tiny-gpt2",
           "data": {"source": "file", "path": f"{WS}/facts.jsonl", "n_edits": 2,
                    "n_heldout": 0},
           "evaluation": {"perplexity_sentences": 0}, "diagnostics": {"spectral_iters": 0},
           "methods": [{"name": "ft", "hparams": FT}]}  # fmt: skip
    for k, v in over.items():
        cfg[k] = v
    return cfg


def _jsonl(*records: object) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def _req(**change: object) -> str:
    return _jsonl({**REQ, **change})


def _without(key: str) -> str:
    return _jsonl({k: v for k, v in REQ.items() if k != key})


# Request files, each given to `eval tiny-gpt2 --requests FILE`: (file, text, names in the line)
REQUEST_FILES = [
    ("no_subject", _without("subject"), ["record 0", "'subject'", "missing"]),
    ("subject_int", _req(subject=5), ["record 0", "'subject'", "string"]),
    ("subject_blank", _req(subject=" "), ["'subject'", "empty"]),
    ("prompt_no_slot", _req(prompt="The capital is"), ["'prompt'", "{}"]),
    ("prompt_two_slots", _req(prompt="{} and {}"), ["'prompt'", "{}"]),
    ("target_empty", _req(target_new=""), ["'target_new'", "empty"]),
    ("target_list", _req(target_new=["Rome"]), ["'target_new'", "string"]),
    ("same_targets", _req(target_new="Paris"), ["'target_new'", "nothing to edit"]),
    ("target_true_int", _req(target_true=5), ["'target_true'", "string"]),
    ("extra_list", _req(extra=[1]), ["'extra'", "object"]),
    ("neighbour_types", _req(neighbours=[{"prompt": 5, "target": None}]), ["'neighbours'"]),
    ("neighbours_str", _req(neighbours="x"), ["'neighbours'", "list"]),
    ("neighbour_no_target", _req(neighbours=[{"prompt": "x"}]), ["'neighbours'", "target"]),
    ("paraphrases_str", _req(paraphrases="x"), ["'paraphrases'", "list of strings"]),
    ("paraphrases_int", _req(paraphrases=[1]), ["'paraphrases'", "list of strings"]),
    ("id_dict", _req(id={"a": 1}), ["'id'", "dict"]),
    ("id_bool", _req(id=True), ["'id'", "bool"]),
    ("relation_int", _req(relation=5), ["'relation'", "string"]),
    ("unknown_field", _req(bogus=1), ["'bogus'", "unknown field"]),
    ("not_object", _jsonl([1, 2]), ["record 0", "JSON object"]),
    ("duplicate_id", _jsonl(REQ, REQ), ["record 1", "'id'", "duplicated"]),
    ("bad_json_line", _jsonl(REQ) + "{oops\n", ["record 1", "not valid JSON"]),
    ("bad_json_array", "[" + json.dumps(REQ) + ",", ["not valid JSON"]),
    ("array_of_ints", "[1, 2]", ["record 0", "JSON object"]),
    ("empty", "", ["no records"]),
    ("long_subject", _req(subject=LONG), ["record 0", "'subject'", "at most 128"]),
    ("long_target", _req(target_new=LONG), ["record 0", "'target_new'", "at most 128"]),
    ("long_paraphrase", _req(paraphrases=[LONG]), ["'paraphrases'", "at most 128"]),
    ("long_neighbour", _req(neighbours=[{"prompt": LONG, "target": "x"}]), ["'neighbours'"]),
    ("counterfact_no_rewrite", _jsonl({"case_id": 1, "requested_rewrite": 5}),
     ["'requested_rewrite'", "dict"]),
    ("counterfact_target_int", _jsonl({"requested_rewrite": {
        "prompt": "{} is in", "subject": "Paris", "target_new": {"str": 5},
        "target_true": {"str": "France"}}}), ["'requested_rewrite.target_new.str'"]),
    ("zsre_subject_missing", _jsonl({"src": "Where is Paris?", "alt": "Rome", "subject": "Oslo"}),
     ["'subject'", "does not occur"]),
]  # fmt: skip


DELTA_NAMES = {
    "zero": ["unreadable safetensors"],
    "truncated": ["unreadable safetensors"],
    "corrupt_header": ["unreadable safetensors"],
    "text": ["unreadable safetensors"],
    "no_colon": [f"field '{W}'", "::"],
    "unknown_kind": [f"field 'bogus::{W}'"],
    "half_pair": [f"field 'lowrank_left::{W}'", "pair"],
    "pair_shapes": [f"field 'lowrank_left::{W}'", "low-rank factors"],
    "int_tensor": [f"field 'dense::{W}'", "floating-point"],
    "dense_and_lowrank": [f"field 'dense::{W}'", "both"],
    "metadata_not_json": ["field 'metadata'", "not JSON"],
    "metadata_list": ["field 'metadata'", "object"],
    "metadata_layers": ["field 'metadata.layers'"],
    "metadata_fingerprint": ["field 'metadata.model_fingerprint'"],
    "other_format": ["not an editrisk delta"],
    "no_update": ["holds no update"],
    "nan": ["NaN or inf"],
    "unknown_param": ["'nope.weight'", "does not have"],
    "wrong_shape": [f"'{W}'", "shape"],
    "fp16_overflow": [f"'{W}'", "torch.float16", "range"],
    "other_model": ["0123456789abcdef", "already applied"],
}


def _bad_deltas(ws: Path) -> None:
    """Write every malformed delta of `DELTA_NAMES` under ws/deltas."""
    d = ws / "deltas"
    d.mkdir()
    good = (ws / "good.safetensors").read_bytes()
    raw = {
        "zero": b"",
        "truncated": good[: len(good) // 2],
        "corrupt_header": b"\xff" * 8 + good[8:],
        "text": b"not a delta\n",
    }
    for name, data in raw.items():
        (d / f"{name}.safetensors").write_bytes(data)
    z = torch.zeros(64, 32)
    tensor_files = {
        "no_colon": ({W: z}, FMT),
        "unknown_kind": ({f"bogus::{W}": z}, FMT),
        "half_pair": ({f"lowrank_left::{W}": torch.zeros(64, 1)}, FMT),
        "pair_shapes": ({f"lowrank_left::{W}": torch.zeros(64, 2),
                         f"lowrank_right::{W}": torch.zeros(32, 1)}, FMT),
        "int_tensor": ({f"dense::{W}": z.long()}, FMT),
        "dense_and_lowrank": ({f"dense::{W}": z, f"lowrank_left::{W}": torch.zeros(64, 1),
                               f"lowrank_right::{W}": torch.zeros(32, 1)}, FMT),
        "metadata_not_json": ({f"dense::{W}": z}, {**FMT, "metadata": "{oops"}),
        "metadata_list": ({f"dense::{W}": z}, {**FMT, "metadata": "[1]"}),
        "metadata_layers": ({f"dense::{W}": z}, {**FMT, "metadata": '{"layers": 5}'}),
        "metadata_fingerprint": ({f"dense::{W}": z},
                                 {**FMT, "metadata": '{"model_fingerprint": 5}'}),
        "other_format": ({f"dense::{W}": z}, {"format": "pt"}),
        "no_update": ({}, FMT),
        "nan": ({f"dense::{W}": torch.full((64, 32), float("nan"))}, FMT),
        "unknown_param": ({"dense::nope.weight": z}, FMT),
        "wrong_shape": ({f"dense::{W}": torch.zeros(32, 64)}, FMT),
        "fp16_overflow": ({f"dense::{W}": torch.full((64, 32), 1e6)}, FMT),
    }  # fmt: skip
    for name, (tensors, meta) in tensor_files.items():
        save_file(tensors, str(d / f"{name}.safetensors"), metadata=meta)
    other = Delta.load(ws / "good.safetensors")
    other.metadata["model_fingerprint"] = "0123456789abcdef"
    other.save(d / "other_model.safetensors")


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace: good and bad inputs, a finished run and a good delta (tiny-gpt2)."""
    from editrisk.api import edit
    from editrisk.engine import resolve, run_study
    from editrisk.models import load_model
    from editrisk.requests import EditRequest

    ws = tmp_path_factory.mktemp("bad_input")
    (ws / "cache").mkdir()
    (ws / "cwd").mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDITRISK_CACHE", str(ws / "cache"))
        (ws / "facts.jsonl").write_text(_jsonl(*FACTS))
        h = load_model("tiny-gpt2", device="cpu")
        d = edit(h, "ft", EditRequest("France", "The capital of {} is", "Rome", "Paris"), **FT)
        d.save(ws / "good.safetensors")
        run_study(resolve(_config(data={**_config()["data"], "path": str(ws / "facts.jsonl")})),
                  ws / "run")  # fmt: skip
    reqs = ws / "requests"
    reqs.mkdir()
    for name, text, _ in REQUEST_FILES:
        (reqs / f"{name}.jsonl").write_text(text)
    (reqs / "not_utf8.jsonl").write_bytes(b'{"subject": "Fr\xff", "prompt": "{} is"}\n')
    (ws / "not_utf8.yaml").write_bytes(b"name: t\xff\n")
    (ws / "broken.yaml").write_text("name: [t\n")
    (ws / "list.yaml").write_text("- 1\n")
    (ws / "hp_list.yaml").write_text("- 1\n")
    (ws / "a_file").write_text("x")
    (ws / "full").mkdir()
    (ws / "full" / "x").write_text("x")
    (ws / "not_a_run").mkdir()
    for name, rows in {"rows_not_json": "{oops\n", "rows_not_object": "5\n",
                       "rows_not_utf8": '{"a": "\xff"}\n'}.items():  # fmt: skip
        shutil.copytree(ws / "run", ws / name)
        with open(ws / name / "rows.jsonl", "a", encoding="latin-1") as f:
            f.write(rows)
    shutil.copytree(ws / "run", ws / "config_list")
    (ws / "config_list" / "config.yaml").write_text("- 1\n")
    _bad_deltas(ws)
    for name, text in CONFIG_FILES.items():
        _write(ws / "configs" / f"{name}.yaml", text.replace(WS, str(ws)))
    return ws


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Size and modification time of every file and folder under `root`, but the writer lock
    (a refused run may take it: it records the last writer's pid)."""
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.name != ".writer.lock"
    }


def _cfg_file(name: str, cfg: dict) -> str:
    """Register config `name` (written into the workspace by the fixture); its path."""
    CONFIG_FILES[name] = yaml.safe_dump(cfg)
    return f"{WS}/configs/{name}.yaml"


def _run_cases() -> list[tuple[str, list[str], list[str]]]:
    """(id, argv, names in the line) of the study config cases."""
    ws = Path(WS)
    m = [{"name": "ft", "hparams": FT}]
    data = _config()["data"]
    variants: dict[str, tuple[dict, list[str]]] = {
        "label_absolute": ({"methods": [{**m[0], "label": str(ws / "victim")}]},
                           ["'methods.0.label'", "names a folder"]),
        "label_relative": ({"methods": [{**m[0], "label": "../../victim"}]},
                           ["'methods.0.label'"]),
        "label_slash": ({"methods": [{**m[0], "label": "a/b"}]}, ["'methods.0.label'"]),
        "edit_set_name": ({"edit_sets": {"../x": {}}}, ["'edit_sets'", "edit set name"]),
        "editor_unknown": ({"methods": [{"name": "nope"}]}, ["'methods[0].hparams'", "nope"]),
        "hparam_type": ({"methods": [{"name": "ft", "hparams": {"steps": "abc"}}]},
                        ["'methods[0].hparams'", "'steps'"]),
        "hparam_float_int": ({"methods": [{"name": "ft", "hparams": {"steps": 2.5}}]},
                             ["'steps'"]),
        "hparam_nan": ({"methods": [{"name": "rome", "hparams": {"weight_decay": float("nan")}}]},
                       ["'weight_decay'", "finite"]),
        "hparam_unknown": ({"methods": [{"name": "ft", "hparams": {"bogus": 1}}]}, ["bogus"]),
        "hparam_layer_range": ({"methods": [{"name": "ft", "hparams": {"layers": [999]}}]},
                               ["methods[0] (ft)", "layer 999"]),
        "ft_batch_size_0": ({"methods": [{"name": "ft", "hparams": {"batch_size": 0}}]},
                            ["batch_size"]),
        "no_methods": ({"methods": []}, ["'methods'", "no editor"]),
        "methods_dict": ({"methods": {"a": 1}}, ["'methods'"]),
        "same_label": ({"methods": m + m}, ["'methods[1]'", "repeats"]),
        "grid_layer": ({"grid": {"layer": [999]}}, ["grid.layer", "layer 999"]),
        "grid_alpha": ({"grid": {"alpha": [2.0]}}, ["'grid.alpha'", "[0, 1]"]),
        "grid_alpha_str": ({"grid": {"alpha": ["a"]}}, ["'grid.alpha.0'"]),
        "grid_seed_str": ({"grid": {"seed": ["x"]}}, ["'grid.seed.0'"]),
        "grid_edit_set": ({"grid": {"edit_set": ["nope"]}}, ["'grid'", "nope"]),
        "workers_str": ({"executor": {"workers": "2"}}, ["'executor.workers'"]),
        "executor_kind": ({"executor": {"kind": "slurm"}}, ["'executor.kind'"]),
        "n_edits_negative": ({"data": {**data, "n_edits": -3}}, ["'data.n_edits'"]),
        "n_edits_float": ({"data": {**data, "n_edits": 2.5}}, ["'data.n_edits'"]),
        "edit_set_n": ({"edit_sets": {"a": {"n": -1}}}, ["'edit_sets.a.n'"]),
        "edit_set_key": ({"edit_sets": {"a": {"bogus": 1}}}, ["'edit_sets.a.bogus'"]),
        "evaluation_key": ({"evaluation": {"bogus": 1}}, ["'evaluation.bogus'"]),
        "evaluation_batch": ({"evaluation": {"batch_size": 0}}, ["'evaluation.batch_size'"]),
        "top_key": ({"seed": 1}, ["'seed'", "unknown key"]),
        "checkpoint_every": ({"checkpoint_every": 0}, ["'checkpoint_every'"]),
        "protocol_str": ({"protocol": "seq"}, ["'protocol'"]),
        "protocol_name": ({"protocol": {"name": "random"}}, ["'protocol.name'"]),
        "single_final": ({"protocol": {"name": "single"}}, ["'schedule'", "single"]),
        "family": ({"family": "audio"}, ["audio"]),
        "model_int": ({"model": 5}, ["'model'"]),
        "device": ({"device": "tpu"}, ["'device'", "'tpu'"]),
        "dtype": ({"dtype": "int3"}, ["'dtype'", "'int3'"]),
        "data_no_path": ({"data": {"source": "file"}}, ["'data'", "data.path"]),
        "data_missing": ({"data": {**data, "path": str(ws / "nope.jsonl")}},
                         ["nope.jsonl", "file not found"]),
        "data_not_utf8": ({"data": {**data, "path": str(ws / "requests/not_utf8.jsonl")}},
                          ["not_utf8.jsonl", "not UTF-8", "line 1"]),
        "data_too_long": ({"data": {**data, "path": str(ws / "requests/long_subject.jsonl"),
                                    "n_edits": 1}},
                          ["long_subject.jsonl", "'subject'", "at most 128"]),
        "data_too_few": ({"data": {**data, "n_edits": 5}}, ["edit set 'default'", "only 3"]),
    }  # fmt: skip
    cases = []
    for name, (over, names) in variants.items():
        path = _cfg_file(name, _config(**over))
        # checked against the model and the data (named instead): grid and editor layers, data
        in_config = not name.startswith(("data_", "hparam_layer", "grid_layer"))
        cases.append((f"run-{name}", ["run", path, "--run-dir", str(ws / "new"), "--no-progress"],
                      [f"{name}.yaml"] * in_config + names))  # fmt: skip
    path = _cfg_file("escape", _config(name="../../x"))
    cases.append(("run-name-escapes", ["run", path, "--no-progress"], ["'name'", "../../x"]))
    path = _cfg_file("sweep_hparam", _config(methods=[{"name": "ft", "hparams": {"layers": 2}}]))
    cases.append(("sweep-hparam", ["sweep", path, "--run-dir", str(ws / "new")], ["'layers'"]))
    other = _cfg_file("other", _config(methods=[{"name": "ft", "hparams": {"steps": 3}}]))
    cases.append(("run-other-config", ["run", other, "--run-dir", str(ws / "run"), "--no-progress"],
                  ["different config", "steps"]))  # fmt: skip
    good = _cfg_file("good", _config())
    cases.append(("run-only-unknown", ["run", good, "--only", "nope", "--run-dir", str(ws / "new")],
                  ["good.yaml", "nope"]))  # fmt: skip
    for name, names in {"not_utf8": ["not UTF-8", "line 1"], "broken": ["not valid YAML"],
                        "list": ["mapping"], "nope": ["not found"]}.items():  # fmt: skip
        cases.append((f"run-file-{name}", ["run", str(ws / f"{name}.yaml"), "--no-progress"],
                      [f"{name}.yaml", *names]))  # fmt: skip
    return cases


def _cases() -> list[tuple[str, list[str], list[str]]]:
    """(id, argv, names in the line) of every case."""
    ws = Path(WS)
    out = str(ws / "out")
    cases = []
    for name, _, names in REQUEST_FILES:
        path = str(ws / "requests" / f"{name}.jsonl")
        argv = ["eval", "tiny-gpt2", "--requests", path, "--run-dir", out]
        cases.append((f"requests-{name}", argv, [f"{name}.jsonl", *names]))
    nu = str(ws / "requests" / "not_utf8.jsonl")
    cases += [
        ("requests-not-utf8", ["eval", "tiny-gpt2", "--requests", nu, "--run-dir", out],
         ["not_utf8.jsonl", "not UTF-8", "line 1"]),
        ("requests-missing", ["eval", "tiny-gpt2", "--requests", str(ws / "nope.jsonl")],
         ["nope.jsonl", "file not found"]),
        ("mqd-not-utf8", ["data", "mqd", "--facts", nu, "--out", out], ["not_utf8.jsonl"]),
        ("mqd-k", ["data", "mqd", "--facts", str(ws / "facts.jsonl"), "--k", "1", "--out", out],
         ["--k"]),
        ("edit-request-json", ["edit", "tiny-gpt2", "--request", '{"subject": 5}'],
         ["<--request>", "record 0", "'prompt'"]),
        ("edit-request-not-json", ["edit", "tiny-gpt2", "--request", "{oops"],
         ["neither a file nor JSON"]),
        ("edit-request-long-json", ["edit", "tiny-gpt2", "--request", _req(subject=LONG)],
         ["<--request>", "'subject'", "at most 128"]),
        ("edit-request-file-long", ["edit", "tiny-gpt2", "--editor", "ft", "--set", "layers=[1]",
                                    "--request", str(ws / "requests/long_target.jsonl")],
         ["long_target.jsonl", "'target_new'", "at most 128"]),
        ("edit-no-request", ["edit", "tiny-gpt2", "--subject", "x"], ["--request"]),
        ("edit-request-not-utf8", ["edit", "tiny-gpt2", "--request", nu], ["not UTF-8"]),
        ("eval-limit", ["eval", "tiny-gpt2", "--requests", str(ws / "facts.jsonl"),
                        "--limit", "-1"], ["--limit"]),
        ("eval-gen-tokens", ["eval", "tiny-gpt2", "--requests", str(ws / "facts.jsonl"),
                             "--gen-tokens", "-1"], ["--gen-tokens"]),
        ("eval-gen-tokens-too-many", ["eval", "tiny-gpt2", "--requests", str(ws / "facts.jsonl"),
                                      "--gen-tokens", "200", "--run-dir", out],
         ["facts.jsonl", "record 0", "at most 128 less 200"]),
        ("eval-shift-kind", ["eval", "tiny-gpt2", "--requests", str(ws / "facts.jsonl"),
                             "--shifts", "--shift-kinds", "nope", "--run-dir", out], ["'nope'"]),
        ("eval-batch-size", ["eval", "tiny-gpt2", "--requests", str(ws / "facts.jsonl"),
                             "--batch-size", "0"], ["--batch-size"]),
        ("eval-dtype", ["eval", "tiny-gpt2", "--requests", str(ws / "facts.jsonl"),
                        "--dtype", "int3", "--run-dir", out], ["'int3'"]),
        ("worldfacts-limit", ["data", "build", "worldfacts", "--model", "tiny-gpt2", "--out", out,
                              "--limit-per-relation", "-1"], ["--limit-per-relation"]),
    ]  # fmt: skip
    for s, names in {
        "steps=abc": ["'steps'", "'abc'"], "steps=2.5": ["'steps'", "2.5"],
        "layers=2": ["'layers'", "list of int"], "layers=[a]": ["'layers'"],
        "layers=[999]": ["layer 999"], "prefixes=[[1]]": ["'prefixes'"],
        "weight_decay=.nan": ["'weight_decay'", "finite"], "lr=-1": ["lr"],
        "bogus=1": ["bogus"], "layers=[1": ["--set layers", "not valid YAML"],
        "garbage": ["--set", "'garbage'"],
    }.items():  # fmt: skip
        cases.append((f"rome-set-{s}", ["edit", "tiny-gpt2", "--editor", "rome", "--set", s,
                                        *INLINE], names))  # fmt: skip
    for s, names in {"batch_size=0": ["batch_size"], "steps=0": ["steps"], "loss=x": ["loss"],
                     "layers=[-1]": ["layers"]}.items():  # fmt: skip
        cases.append((f"ft-set-{s}", ["edit", "tiny-gpt2", "--editor", "ft", "--set", s, *INLINE],
                      names))  # fmt: skip
    hp = {"broken": ["not valid YAML"], "list": ["mapping"], "not_utf8": ["not UTF-8"],
          "nope": ["not found"]}  # fmt: skip
    for name, names in hp.items():
        cases.append((f"hparams-{name}", ["edit", "tiny-gpt2", "--hparams",
                                          str(ws / f"{name}.yaml"), *INLINE],
                      [f"{name}.yaml", *names]))  # fmt: skip
    cases += [
        ("edit-editor", ["edit", "tiny-gpt2", "--editor", "nope", *INLINE], ["'nope'"]),
        ("edit-vision-editor", ["edit", "tiny-gpt2", "--editor", "rewrite", *INLINE],
         ["vision"]),
        ("edit-device", ["edit", "tiny-gpt2", "--device", "tpu", *INLINE], ["'tpu'"]),
        ("edit-dtype", ["edit", "tiny-gpt2", "--dtype", "int3", *INLINE], ["'int3'"]),
        ("edit-max-new-tokens", ["edit", "tiny-gpt2", "--max-new-tokens", "0", *INLINE],
         ["--max-new-tokens"]),
        ("edit-model", ["edit", "no-such-model", *INLINE], ["'no-such-model'"]),
        ("generate-long-prompt", ["generate", "tiny-gpt2", LONG], ["128 tokens", "tiny-gpt2"]),
        ("generate-max-new-tokens", ["generate", "tiny-gpt2", "x", "--max-new-tokens", "999"],
         ["999 new tokens", "128"]),
        ("edit-save-delta-dir", ["edit", "tiny-gpt2", "--editor", "ft", "--set", "layers=[1]",
                                 "--save-delta", str(ws / "full"), *INLINE], ["full", "folder"]),
    ]  # fmt: skip
    for name, names in DELTA_NAMES.items():
        path = str(ws / "deltas" / f"{name}.safetensors")
        argv = ["export", "tiny-gpt2", "--delta", path, "--out", str(ws / "exported")]
        if name == "fp16_overflow":
            argv += ["--dtype", "float16"]
        cases.append((f"export-{name}", argv, [f"{name}.safetensors", *names]))
    deltas = ws / "deltas"
    other = str(deltas / "other_model.safetensors")
    good = str(ws / "good.safetensors")
    facts = str(ws / "facts.jsonl")
    cases += [
        ("export-missing", ["export", "tiny-gpt2", "--delta", str(ws / "nope.safetensors"),
                            "--out", out], ["nope.safetensors", "not found"]),
        ("export-out-file", ["export", "tiny-gpt2", "--delta", good, "--out",
                             str(ws / "a_file")], ["a_file", "is a file"]),
        ("export-out-under-file", ["export", "tiny-gpt2", "--delta", good, "--out",
                                   str(ws / "a_file" / "m")], ["a_file", "is a file"]),
        ("export-out-not-empty", ["export", "tiny-gpt2", "--delta", good, "--out",
                                  str(ws / "full")], ["full", "not empty"]),
        ("eval-delta-other-model", ["eval", "tiny-gpt2", "--requests", facts, "--delta", other,
                                    "--run-dir", out], ["other_model.safetensors",
                                                        "already applied"]),
        ("eval-delta-corrupt", ["eval", "tiny-gpt2", "--requests", facts, "--delta",
                                str(deltas / "text.safetensors"), "--run-dir", out],
         ["text.safetensors", "unreadable"]),
        ("interpolate-delta-other-model", ["interpolate", "tiny-gpt2", "--delta", other,
                                           "--request", facts, "--out", out],
         ["other_model.safetensors", "already applied"]),
        ("interpolate-delta-unknown-kind", ["interpolate", "tiny-gpt2", "--delta",
                                            str(deltas / "unknown_kind.safetensors"),
                                            "--request", facts], ["bogus::"]),
        ("interpolate-alphas-range", ["interpolate", "tiny-gpt2", "--delta", good, "--request",
                                      facts, "--alphas", "0,-5,1e6"], ["--alphas", "[0, 1]"]),
        ("interpolate-alphas-nan", ["interpolate", str(ws / "run"), "--alphas", "nan"],
         ["--alphas"]),
        ("interpolate-alphas-words", ["interpolate", str(ws / "run"), "--alphas", "a,b"],
         ["--alphas"]),
        ("interpolate-threshold", ["interpolate", "tiny-gpt2", "--delta", good, "--request",
                                   facts, "--threshold", "2"], ["--threshold"]),
        ("interpolate-heldout", ["interpolate", "tiny-gpt2", "--delta", good, "--request",
                                 facts, "--heldout", "-1"], ["--heldout"]),
        ("interpolate-no-delta", ["interpolate", "tiny-gpt2"], ["--delta"]),
        ("interpolate-not-a-run", ["interpolate", str(ws / "config_list"), "--alphas", "0,1"],
         ["config.yaml", "mapping"]),
    ]  # fmt: skip
    for cmd in ("report", "analyze"):
        cases += [
            (f"{cmd}-not-a-run", [cmd, str(ws / "not_a_run")], ["not_a_run", "no config.yaml"]),
            (f"{cmd}-config-list", [cmd, str(ws / "config_list")], ["config.yaml", "mapping"]),
            (f"{cmd}-rows-not-json", [cmd, str(ws / "rows_not_json")], ["rows.jsonl", "not JSON"]),
            (
                f"{cmd}-rows-not-object",
                [cmd, str(ws / "rows_not_object")],
                ["rows.jsonl", "JSON object"],
            ),
            (f"{cmd}-rows-not-utf8", [cmd, str(ws / "rows_not_utf8")], ["rows.jsonl", "utf-8"]),
        ]
    cases.append(("analyze-threshold", ["analyze", str(ws / "run"), "--threshold", "5"],
                  ["--threshold"]))  # fmt: skip
    return cases + _run_cases()


CASES = _cases()


def _main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, argv: list[str]):  # noqa: ANN202
    """The `editrisk` script's entry point in-process: (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["editrisk", *argv])
    with pytest.raises(SystemExit) as exc:
        main()
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


@pytest.mark.parametrize(("argv", "names"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    ws: Path,
    argv: list[str],
    names: list[str],
    monkeypatch,
    capsys,  # noqa: ANN001
) -> None:
    monkeypatch.setenv("EDITRISK_CACHE", str(ws / "cache"))
    monkeypatch.chdir(ws / "cwd")  # a default runs/NAME lands in the workspace
    argv = [a.replace(WS, str(ws)) for a in argv]
    before = _snapshot(ws)
    code, out, err = _main(monkeypatch, capsys, argv)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith("editrisk: error: ") and "Traceback" not in out + err
    for name in names:
        assert name.replace(WS, str(ws)) in lines[0]
    assert _snapshot(ws) == before, "a refused command wrote or changed files"


RO_DRIVER = """
import contextlib, io, json, sys
from editrisk.cli import main
out = []
for argv in json.loads(sys.argv[1]):
    sys.argv = ["editrisk", *argv]
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            main()
    except SystemExit as e:
        out.append([e.code, err.getvalue()])
    except BaseException as e:
        out.append([repr(e), err.getvalue()])
print(json.dumps(out))
"""


def _read_only_shell(folder: Path) -> list[str] | None:
    """A command prefix running a shell in which `folder` is mounted read-only (a private
    mount namespace; root), or None where that is not possible."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return None
    mount = f"mount --bind {folder} {folder} && mount -o remount,ro,bind {folder} {folder}"
    probe = subprocess.run(["unshare", "-m", "sh", "-c", f"{mount} && ! touch {folder}/.w"],
                           capture_output=True)  # fmt: skip
    return (
        ["unshare", "-m", "sh", "-c", f'{mount} && exec "$@"', "sh"]
        if not probe.returncode
        else None
    )


def test_read_only_run_directory_is_one_line_per_command(ws: Path, tmp_path: Path) -> None:
    """Ten commands that write into a read-only folder: one line naming it, exit 2."""
    ro = tmp_path / "ro"
    shutil.copytree(ws / "run", ro)
    shell = _read_only_shell(ro)
    if shell is None:
        pytest.skip("needs root and unshare to mount a folder read-only")
    facts, good = str(ws / "facts.jsonl"), str(ws / "good.safetensors")
    cfg = str(ws / "configs/good.yaml")
    commands = [
        ["report", str(ro)],
        ["analyze", str(ro)],
        ["run", cfg, "--run-dir", str(ro), "--no-progress"],
        ["run", cfg, "--run-dir", str(ro / "new"), "--no-progress"],
        ["interpolate", str(ro), "--alphas", "0,1"],
        ["eval", "tiny-gpt2", "--requests", facts, "--run-dir", str(ro / "eval")],
        ["export", "tiny-gpt2", "--delta", good, "--out", str(ro / "exported")],
        ["edit", "tiny-gpt2", "--editor", "ft", "--set", "layers=[1]", "--set", "steps=1",
         "--save-delta", str(ro / "d.safetensors"), *INLINE],
        ["data", "mqd", "--facts", facts, "--out", str(ro / "mqd.jsonl")],
        ["data", "build", "worldfacts", "--model", "tiny-gpt2", "--no-filter",
         "--out", str(ro / "wf.jsonl")],
    ]  # fmt: skip
    before = _snapshot(ro)
    env = {**os.environ, "EDITRISK_CACHE": str(ws / "cache"), "OMP_NUM_THREADS": "1"}
    argv = [*shell, sys.executable, "-c", RO_DRIVER, json.dumps(commands)]
    proc = subprocess.run(
        argv, capture_output=True, text=True, env=env, cwd=ws / "cwd", timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    for argv, (code, err) in zip(commands, json.loads(proc.stdout.splitlines()[-1])):
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1, (argv, code, err)
        assert str(ro) in lines[0] and "Traceback" not in err, (argv, lines[0])
    assert _snapshot(ro) == before


def _keys(run: Path) -> list[str]:
    return sorted(json.loads(line)["key"] for line in (run / "rows.jsonl").read_text().splitlines())


def test_second_writer_of_a_run_directory_is_refused_naming_the_first(ws: Path, tmp_path) -> None:
    """Two `editrisk run` on one directory at once: the second exits 2 naming the first's pid
    (held still by SIGSTOP while the second tries), and the rows are those of one run."""
    run = tmp_path / "run"
    cmd = [*CLI, "run", str(ws / "configs/good.yaml"), "--run-dir", str(run), "--no-progress"]
    env = {**os.environ, "EDITRISK_CACHE": str(ws / "cache"), "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        lock, deadline = run / ".writer.lock", time.monotonic() + 120
        while time.monotonic() < deadline and first.poll() is None:
            if lock.exists() and lock.read_text().strip() == str(first.pid):
                break
            time.sleep(0.05)
        assert first.poll() is None, first.stderr.read()
        first.send_signal(signal.SIGSTOP)
        second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        first.send_signal(signal.SIGCONT)
        assert first.wait(timeout=120) == 0, first.stderr.read()
    finally:
        first.kill()
    lines = second.stderr.strip().splitlines()
    assert second.returncode == 2 and len(lines) == 1, second.stderr
    assert f"pid {first.pid}" in lines[0] and str(run) in lines[0]
    keys = _keys(run)
    assert len(keys) == len(set(keys)) and keys == _keys(ws / "run")


def test_report_out_writes_only_there(ws: Path, tmp_path: Path, monkeypatch, capsys) -> None:  # noqa: ANN001
    """`report RUN --out DIR` leaves RUN as it was (no RUN/analysis, no RUN/report), and a
    row kind that looks like a path names no file."""
    run, out = tmp_path / "run", tmp_path / "a" / "b" / "c" / "d" / "rep"
    shutil.copytree(ws / "run", run)
    with open(run / "rows.jsonl", "a") as f:
        f.write(json.dumps({"kind": "x/../../../../report_escape", "method": "ft"}) + "\n")
    before = _snapshot(run)
    code, _, err = _main(monkeypatch, capsys, ["report", str(run), "--out", str(out)])
    assert code == 0, err
    assert (out / "index.html").is_file() and _snapshot(run) == before
    assert not [p for p in tmp_path.rglob("*") if "report_escape" in p.name]
