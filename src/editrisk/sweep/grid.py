"""Sweep configs and their expansion: a grid of editor x layer x alpha x seed x edit set.

A *cell* is one point of the grid and one result row. Cells that differ only in alpha share
one *task*: the edit is computed once and every alpha is an evaluation of the scaled delta
(1-layer interpolation); alpha = 0 is the unedited model, evaluated once per (seed, edit set)
by a *baseline* task. A resumed sweep runs only the cells that have no row yet.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from editrisk.errors import EditriskError, InputError
from editrisk.settings import read_config_file

FAMILIES = ("language", "vision")
EXECUTORS = ("local", "ray")
GRID_KEYS = ("editor", "layer", "alpha", "seed", "edit_set")

DEFAULTS: dict[str, Any] = {
    "name": "sweep",
    "family": "language",
    # language: a model name or path; vision: {family: vgg|resnet, width, epochs, size}
    "model": "smollm2-135m",
    "device": "cpu",
    "grid": {
        "editor": ["rome"],
        "layer": ["default"],
        "alpha": [0.0, 0.5, 1.0],
        "seed": [0],
        "edit_set": ["default"],
    },
    # language: {n, start} over the known WorldFacts; vision: digits_rewrite_task arguments
    "edit_sets": {"default": {}},
    "editor_params": {},  # editor name -> hyperparameters
    # language: {heldout, filter_known}; vision: {n_images, corruptions, severities}
    "evaluation": {},
    "executor": {"kind": "local", "workers": 1, "address": None, "num_cpus": 1, "num_gpus": 0},
}


def _fail(source: str, msg: str, field_: str | None = None) -> None:
    raise InputError(msg, file=source, field=field_)


def resolve_sweep(raw: dict[str, Any], source: str = "config") -> dict[str, Any]:
    """Defaults filled in and every field checked; errors name the file and field."""
    if not isinstance(raw, dict):
        _fail(source, "a sweep config must be a mapping")
    unknown = sorted(set(raw) - set(DEFAULTS))
    if unknown:
        _fail(source, f"unknown key(s) {unknown}; known: {sorted(DEFAULTS)}")
    cfg = copy.deepcopy(DEFAULTS)
    for k, v in raw.items():
        if isinstance(cfg[k], dict) and k in ("grid", "executor"):
            if not isinstance(v, dict):
                _fail(source, "must be a mapping", k)
            bad = sorted(set(v) - set(cfg[k]))
            if bad:
                _fail(source, f"unknown key(s) {bad}; known: {sorted(cfg[k])}", k)
            cfg[k].update(v)
        else:
            cfg[k] = v
    if cfg["family"] not in FAMILIES:
        _fail(source, f"must be one of {list(FAMILIES)}, got {cfg['family']!r}", "family")
    grid = cfg["grid"]
    for k in GRID_KEYS:
        vals = grid[k]
        if not isinstance(vals, list) or not vals:
            _fail(source, "must be a non-empty list", f"grid.{k}")
        if len(set(map(str, vals))) != len(vals):
            _fail(source, f"has duplicates: {vals}", f"grid.{k}")
    if not all(isinstance(a, (int, float)) and 0 <= a <= 1 for a in grid["alpha"]):
        _fail(source, f"alphas must be numbers in [0, 1], got {grid['alpha']}", "grid.alpha")
    grid["alpha"] = [float(a) for a in grid["alpha"]]
    if not all(isinstance(s, int) for s in grid["seed"]):
        _fail(source, "seeds must be integers", "grid.seed")
    for layer in grid["layer"]:
        if not (isinstance(layer, int) or layer == "default"):
            _fail(source, f"a layer is an integer or 'default', got {layer!r}", "grid.layer")
    for name in grid["edit_set"]:
        if name not in cfg["edit_sets"]:
            _fail(source, f"edit set {name!r} is not defined under edit_sets", "grid.edit_set")
    from editrisk.editors import get_editor

    for editor in grid["editor"]:
        params = cfg["editor_params"].get(editor) or {}
        try:
            get_editor(editor, params)  # name and hyperparameters
        except EditriskError as err:
            _fail(source, str(err), f"editor_params.{editor}")
    ex = cfg["executor"]
    if ex["kind"] not in EXECUTORS:
        _fail(source, f"must be one of {list(EXECUTORS)}, got {ex['kind']!r}", "executor.kind")
    if not isinstance(ex["workers"], int) or ex["workers"] < 1:
        _fail(source, "must be an integer >= 1", "executor.workers")
    return cfg


def load_sweep(path: str | Path) -> dict[str, Any]:
    """Read and resolve a YAML sweep config."""
    return resolve_sweep(read_config_file(path), str(path))


@dataclass(frozen=True)
class Cell:
    editor: str
    layer: int | str
    alpha: float
    seed: int
    edit_set: str

    @property
    def id(self) -> str:
        return f"{self.editor}/L{self.layer}/s{self.seed}/{self.edit_set}/a{self.alpha:g}"


@dataclass
class Task:
    """The cells one worker computes together: one edit (or the baseline), several alphas."""

    kind: str  # 'edit' or 'baseline'
    seed: int
    edit_set: str
    editor: str | None = None
    layer: int | str | None = None
    cells: list[Cell] = field(default_factory=list)

    @property
    def id(self) -> str:
        if self.kind == "baseline":
            return f"baseline/s{self.seed}/{self.edit_set}"
        return f"{self.editor}/L{self.layer}/s{self.seed}/{self.edit_set}"

    @property
    def alphas(self) -> list[float]:
        return sorted({c.alpha for c in self.cells})


def expand(cfg: dict[str, Any]) -> list[Cell]:
    g = cfg["grid"]
    return [
        Cell(e, layer, a, s, es)
        for e, layer, a, s, es in itertools.product(
            g["editor"], g["layer"], g["alpha"], g["seed"], g["edit_set"]
        )
    ]


def plan_tasks(cells: list[Cell], done: set[str]) -> list[Task]:
    """Tasks for the cells not in `done`: one baseline per (seed, edit set) carrying every
    alpha = 0 cell, one edit task per (editor, layer, seed, edit set) for the others."""
    tasks: dict[tuple, Task] = {}
    for c in cells:
        if c.id in done:
            continue
        if c.alpha == 0.0:
            key = ("baseline", c.seed, c.edit_set)
            task = tasks.setdefault(key, Task("baseline", c.seed, c.edit_set))
        else:
            key = ("edit", c.editor, str(c.layer), c.seed, c.edit_set)
            task = tasks.setdefault(key, Task("edit", c.seed, c.edit_set, c.editor, c.layer))
        task.cells.append(c)
    return list(tasks.values())
