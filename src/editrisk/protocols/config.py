"""Run configs (YAML): validated, with every default filled in, so the resolved config written
to the run directory says exactly what ran."""

from __future__ import annotations

import copy
import random
from pathlib import Path
from typing import Any

from editrisk.errors import EditriskError
from editrisk.models import ModelHandle
from editrisk.protocols.plan import Protocol, Schedule
from editrisk.requests import EditRequest
from editrisk.settings import read_config_file

DEFAULTS: dict[str, Any] = {
    "name": "run",
    "model": "smollm2-135m",
    "device": "cpu",
    "dtype": "float32",
    "seed": 0,
    "data": {
        "source": "worldfacts",  # worldfacts | mqd | file
        "n_edits": 30,
        "n_heldout": 50,
        "filter_known": True,  # keep only facts the model knows (worldfacts / mqd)
        "relations": None,
        "limit_per_relation": None,
        "path": None,  # source: file
        "format": "auto",
        "heldout_path": None,
        "mqd": {
            "question_types": ["gen"],
            "k": 4,
            "max_distinct_targets": None,
            "target_tokens": None,
        },
    },
    "protocol": {"name": "sequential", "batch_size": 1},
    "schedule": {"immediate": True, "final": True, "retention_every": 10, "general_every": 10},
    "evaluation": {
        "batch_size": 32,
        "request_rows": True,
        "perplexity_sentences": 48,
        "shifts": [],
        "shift_severities": [1, 3],
    },
    "diagnostics": {"spectral_iters": 8, "condition": False},
    "checkpoint_every": 1,
    "methods": [],
}
_TOP = set(DEFAULTS)


def _merge(base: dict[str, Any], over: dict[str, Any], where: str) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if k not in base:
            raise EditriskError(f"config: unknown key '{where}{k}'; known: {sorted(base)}")
        if isinstance(base[k], dict) and base[k] and isinstance(v, dict):
            out[k] = _merge(base[k], v, f"{where}{k}.")
        else:
            out[k] = v
    return out


def resolve_config(raw: dict[str, Any], source: str = "config") -> dict[str, Any]:
    """Defaults filled in and every section validated; raises `EditriskError` naming the key."""
    if not isinstance(raw, dict):
        raise EditriskError(f"{source}: a run config is a mapping, got {type(raw).__name__}")
    cfg = _merge(DEFAULTS, raw, "")
    protocol = Protocol(**cfg["protocol"])
    Schedule(**cfg["schedule"]).check(protocol)
    if cfg["data"]["source"] not in ("worldfacts", "mqd", "file"):
        raise EditriskError(f"{source}: data.source must be worldfacts, mqd or file")
    if cfg["data"]["source"] == "file" and not cfg["data"]["path"]:
        raise EditriskError(f"{source}: data.source 'file' needs data.path")
    if cfg["checkpoint_every"] < 1:
        raise EditriskError(f"{source}: checkpoint_every must be >= 1")
    methods = cfg["methods"]
    if not methods:
        raise EditriskError(f"{source}: 'methods' lists no editor")
    resolved, labels = [], set()
    for i, m in enumerate(methods):
        m = {"name": m} if isinstance(m, str) else dict(m)
        if "name" not in m or set(m) - {"name", "label", "hparams"}:
            raise EditriskError(
                f"{source}: methods[{i}] needs 'name' (and optional 'label', 'hparams')"
            )
        m.setdefault("label", m["name"])
        m.setdefault("hparams", {})
        if m["label"] in labels:
            raise EditriskError(f"{source}: methods[{i}] repeats label {m['label']!r}")
        labels.add(m["label"])
        resolved.append(m)
    cfg["methods"] = resolved
    return cfg


def select_methods(cfg: dict[str, Any], labels: list[str], source: str) -> dict[str, Any]:
    """`cfg` with only the methods labelled `labels`. A method's rows do not depend on the
    other methods of a run (every step is seeded by seed, label and step), so a subset gives
    the same rows as the whole config."""
    want = [x.strip() for x in labels if x.strip()]
    known = [m["label"] for m in cfg["methods"]]
    unknown = [x for x in want if x not in known]
    if unknown or not want:
        raise EditriskError(f"{source}: no method labelled {unknown or want}; labels: {known}")
    return {**cfg, "methods": [m for m in cfg["methods"] if m["label"] in want]}


def load_config(path: str | Path) -> dict[str, Any]:
    """Read and resolve a YAML run config."""
    return resolve_config(read_config_file(path), str(path))


def build_requests(
    cfg: dict[str, Any], h: ModelHandle
) -> tuple[list[EditRequest], list[EditRequest]]:
    """(requests to edit, held-out facts) as the config's `data` section says, seeded."""
    from editrisk.data.formats import load_requests
    from editrisk.data.mqd import build_mqd
    from editrisk.data.worldfacts import build_worldfacts

    d, seed = cfg["data"], cfg["seed"]
    n_edit, n_held = d["n_edits"], d["n_heldout"]
    if d["source"] == "file":
        edits = load_requests(d["path"], d["format"], n_edit)
        held = load_requests(d["heldout_path"], "auto", n_held) if d["heldout_path"] else []
        return edits, held
    facts = build_worldfacts(
        h if d["filter_known"] else None, seed, d["relations"], d["limit_per_relation"]
    )
    random.Random(seed).shuffle(facts)
    if d["source"] == "worldfacts":
        edits, held = facts[:n_edit], facts[n_edit : n_edit + n_held]
    else:
        q = d["mqd"]
        tt = tuple(q["target_tokens"]) if q["target_tokens"] else None
        questions = build_mqd(
            facts, q["question_types"], q["k"], seed, q["max_distinct_targets"], tt, h.tokenizer
        )
        edits = questions[:n_edit]
        used = {e.id.rsplit("/", 1)[0] for e in edits}  # MQD ids are "<fact id>/<type>"
        rest = [f for f in facts if f.id not in used]
        held = rest[:n_held]
    if len(edits) < n_edit:
        raise EditriskError(f"data: asked for {n_edit} edits, only {len(edits)} available")
    return edits, held
