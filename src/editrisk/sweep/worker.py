"""What one sweep worker does: load the model and edit sets once per process, then compute a
task (an edit and its alphas, or the unedited baseline) and return its rows.

Rows are returned, not written: the driver is the only writer of the run store. The edit of a
task is saved under the run's deltas/ folder, so a resumed sweep evaluates the alphas
it still lacks without recomputing the edit.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from editrisk.delta import Delta
from editrisk.editors import get_editor
from editrisk.errors import EditriskError
from editrisk.sweep.grid import Task

Row = dict[str, Any]


class LanguageFamily:
    """Known WorldFacts edited in a causal LM; edit metrics plus held-out knowledge."""

    def __init__(self, cfg: dict[str, Any], seed: int) -> None:
        from editrisk.data.worldfacts import build_worldfacts, round_robin
        from editrisk.models import load_model

        self.h = load_model(cfg["model"], device=cfg["device"], seed=seed)
        ev = cfg["evaluation"]
        known = build_worldfacts(self.h if ev.get("filter_known", True) else None, seed=seed)
        ordered = round_robin(known, len(known), seed)
        n_held = int(ev.get("heldout", 20))
        self.heldout = ordered[len(ordered) - n_held :]
        self.sets = {}
        for name, spec in cfg["edit_sets"].items():
            start, n = int(spec.get("start", 0)), int(spec.get("n", 2))
            if start + n > len(ordered) - n_held:
                raise EditriskError(
                    f"edit set {name!r} needs facts {start}..{start + n} but only "
                    f"{len(ordered) - n_held} known facts are not held out"
                )
            self.sets[name] = ordered[start : start + n]

    @property
    def model(self) -> torch.nn.Module:
        return self.h.model

    def layer_params(self, layer: int | str) -> dict[str, Any]:
        return {} if layer == "default" else {"layers": [int(layer)]}

    def edit(self, editor: Any, edit_set: str) -> Delta:
        return editor.edit(self.h, self.sets[edit_set])

    def evaluate(self, edit_set: str) -> dict[str, float]:
        from editrisk.evaluation.general import heldout_accuracy
        from editrisk.evaluation.metrics import edit_metrics, summarize

        s = summarize(edit_metrics(self.h, self.sets[edit_set]))
        return {
            "efficacy": s["efficacy.prob_compare"],
            "generalization": s["generalization.prob_compare"],
            "specificity": s["specificity.prob_compare"],
            "edit_margin": s["efficacy.prob_margin"],
            "heldout": heldout_accuracy(self.h, self.heldout)["heldout.prob_compare"],
        }


class VisionFamily:
    """A digits classifier and concept-rewrite tasks; accuracy clean and under corruption."""

    def __init__(self, cfg: dict[str, Any], seed: int) -> None:
        from editrisk.vision.classifiers import train_classifier
        from editrisk.vision.data import load_digits
        from editrisk.vision.metrics import ShiftSuite
        from editrisk.vision.tasks import digits_rewrite_task

        spec = cfg["model"] if isinstance(cfg["model"], dict) else {}
        size = int(spec.get("size", 32))
        self.clf = train_classifier(
            spec.get("family", "vgg"), int(spec.get("width", 8)), int(spec.get("epochs", 8)),
            seed, size,
        )  # fmt: skip
        ev = cfg["evaluation"]
        names = ev.get("corruptions", ["gaussian_noise", "defocus_blur", "contrast"])
        sev = ev.get("severities", [1, 3, 5])
        g = torch.Generator().manual_seed(seed)
        test = load_digits("test", size=size)
        test = test.subset(torch.randperm(len(test), generator=g)[: int(ev.get("n_images", 300))])
        self.general = ShiftSuite(test.images, test.labels, names, sev, seed)
        self.tasks, self.edit_suites = {}, {}
        for name, params in cfg["edit_sets"].items():
            task = digits_rewrite_task(size=size, seed=seed, **(params or {}))
            self.tasks[name] = task
            self.edit_suites[name] = ShiftSuite(
                task.test_images, task.test_labels, names, sev, seed
            )

    @property
    def model(self) -> torch.nn.Module:
        return self.clf.model

    def layer_params(self, layer: int | str) -> dict[str, Any]:
        return {} if layer == "default" else {"layer": int(layer)}

    def edit(self, editor: Any, edit_set: str) -> Delta:
        return editor.edit(self.clf, self.tasks[edit_set])

    def evaluate(self, edit_set: str) -> dict[str, float]:
        from editrisk.vision.metrics import shifted_accuracy

        general = self.general.accuracies(self.general.predictions(self.clf))
        suite = self.edit_suites[edit_set]
        edit = suite.accuracies(suite.predictions(self.clf))
        return {
            "edit_success": edit[("clean", 0)],
            "edit_success_shifted": shifted_accuracy(edit),
            "clean_acc": general[("clean", 0)],
            "shifted_acc": shifted_accuracy(general),
        }


class Worker:
    """Per-process state: one family context per seed, built on first use."""

    def __init__(self, cfg: dict[str, Any], run_dir: str | Path) -> None:
        self.cfg = cfg
        self.deltas = Path(run_dir) / "deltas"
        self._contexts: dict[int, LanguageFamily | VisionFamily] = {}

    def context(self, seed: int) -> LanguageFamily | VisionFamily:
        if seed not in self._contexts:
            torch.manual_seed(seed)
            cls = LanguageFamily if self.cfg["family"] == "language" else VisionFamily
            self._contexts[seed] = cls(self.cfg, seed)
        return self._contexts[seed]

    def run(self, task: Task) -> list[Row]:
        ctx = self.context(task.seed)
        t0 = time.perf_counter()
        if task.kind == "baseline":
            metrics = ctx.evaluate(task.edit_set)
            sec = time.perf_counter() - t0
            return [_row(c, metrics, eval_seconds=sec, edit_seconds=0.0) for c in task.cells]
        delta, edit_seconds = self.delta(task)
        rows = []
        for c in task.cells:
            t = time.perf_counter()
            with delta.scale(c.alpha).applied(ctx.model):
                metrics = ctx.evaluate(task.edit_set)
            rows.append(
                _row(
                    c, metrics,
                    eval_seconds=time.perf_counter() - t,
                    edit_seconds=edit_seconds,
                    layers=delta.layers,
                    delta_fro=sum(v["fro"] ** 2 for v in delta.norms().values()) ** 0.5,
                )
            )  # fmt: skip
        return rows

    def delta(self, task: Task) -> tuple[Delta, float]:
        """An edit task's Delta and the seconds it took: loaded if an earlier run saved it
        (0 s), else computed and saved."""
        ctx = self.context(task.seed)
        path = self.deltas / (task.id.replace("/", "__") + ".safetensors")
        if path.exists():
            return Delta.load(path, next(ctx.model.parameters()).device), 0.0
        params = {**(self.cfg["editor_params"].get(task.editor) or {})}
        params.update(ctx.layer_params(task.layer))
        t = time.perf_counter()
        delta = ctx.edit(get_editor(task.editor, params), task.edit_set)
        seconds = time.perf_counter() - t
        delta.metadata["sweep"] = {
            "task": task.id, "editor": task.editor, "layer": task.layer, "seed": task.seed,
            "edit_set": task.edit_set,
        }  # fmt: skip
        delta.save(path)
        return delta, seconds


def _row(cell: Any, metrics: dict[str, float], **extra: Any) -> Row:
    return {
        "kind": "trade_off",
        "cell": cell.id,
        "editor": cell.editor,
        "layer": cell.layer,
        "alpha": cell.alpha,
        "seed": cell.seed,
        "edit_set": cell.edit_set,
        "path": "unedited" if cell.alpha == 0 else _path(cell.layer),
        **metrics,
        **extra,
    }


def _path(layer: int | str) -> str:
    return "all layers" if layer == "default" else f"layer {layer}"
