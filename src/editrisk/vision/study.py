"""The vision study of "Edit at your own risk": methods x layers on the built-in classifiers.

For every classifier, method, layer and alpha it computes the edit (a Delta), applies it, and
records one row per measurement: accuracy per (set, corruption, severity) and the summary
metrics (clean accuracy, mean shifted accuracy, relative and effective robustness, mCE relative
to the unedited model, accuracy on untouched classes, edit success and errors corrected, clean
and under corruption, accuracy under held-out styles). alpha < 1 is 1-layer interpolation: only
the edited layer's change, scaled by alpha. Cells already in the run's rows are skipped, so an
interrupted study resumes where it stopped.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from editrisk.editors import get_editor
from editrisk.errors import InputError
from editrisk.interpolation import interpolate
from editrisk.runs import RunDir, atomic_write_text
from editrisk.vision.classifiers import Classifier, train_classifier, train_testbed
from editrisk.vision.corruptions import CORRUPTIONS
from editrisk.vision.data import load_digits
from editrisk.vision.metrics import (
    LogitFit,
    ShiftSuite,
    accuracy,
    errors_corrected,
    fit_logit_linear,
    mean_corruption_error,
    shifted_accuracy,
)
from editrisk.vision.tasks import digits_rewrite_task

SUMMARY_METRICS = (
    "clean_acc", "shifted_acc", "relative_robustness", "effective_robustness", "mce",
    "untouched_acc", "edit_success", "errors_corrected", "edit_success_shifted",
    "errors_corrected_shifted", "heldout_style_acc",
)  # fmt: skip


@dataclass
class StudyConfig:
    """A resolved, validated study config (see examples/vision_study.yaml)."""

    name: str = "vision-study"
    seed: int = 0
    size: int = 32
    classifiers: list[dict[str, Any]] = field(
        default_factory=lambda: [{"family": "vgg", "width": 8, "epochs": 8}]
    )
    testbed: dict[str, Any] = field(default_factory=lambda: {"widths": [4, 8], "epochs": [1, 2, 4]})
    task: dict[str, Any] = field(default_factory=dict)
    shifts: dict[str, Any] = field(default_factory=dict)
    methods: dict[str, dict[str, Any]] = field(default_factory=lambda: {"rewrite": {}})
    layers: list[int | str] | dict[str, list[int | str]] = field(default_factory=lambda: [1, 3, -1])
    alphas: list[float] = field(default_factory=lambda: [1.0])

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "config") -> StudyConfig:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise InputError(f"unknown key(s) {unknown}; known: {sorted(known)}", file=source)
        cfg = cls(**d)
        for i, c in enumerate(cfg.classifiers):
            if not isinstance(c, dict) or c.get("family") not in ("vgg", "resnet"):
                raise InputError(
                    "family must be vgg or resnet", file=source, record=i, field="classifiers"
                )
        for m in cfg.methods:
            get_editor(m, cfg.methods[m] or {})  # validates names and hyperparameters
        names = cfg.shifts.get("corruptions", "all")
        if names != "all" and not set(names) <= set(CORRUPTIONS):
            bad = sorted(set(names) - set(CORRUPTIONS))
            raise InputError(f"unknown corruptions {bad}", file=source, field="shifts")
        if not all(0 <= a <= 1 for a in cfg.alphas):
            raise InputError("alphas must lie in [0, 1]", file=source, field="alphas")
        return cfg

    def layers_for(self, family: str) -> list[int | str]:
        return list(self.layers[family] if isinstance(self.layers, dict) else self.layers)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass
class _Eval:
    general: dict  # key -> preds on the general shift suite
    edit: dict  # key -> preds on the edit's test set (clean and corrupted)
    heldout: dict[str, torch.Tensor]  # style -> preds


class VisionStudy:
    """Runs a `StudyConfig` into a run directory, resumable."""

    def __init__(
        self, config: StudyConfig, out: str | Path, log: Callable[[str], None] = print
    ) -> None:
        self.cfg = config
        self.run = RunDir(out)
        self.log = log

    def _suites(self) -> None:
        cfg, sh = self.cfg, self.cfg.shifts
        names = None if sh.get("corruptions", "all") == "all" else sh["corruptions"]
        sev = sh.get("severities", [1, 2, 3, 4, 5])
        test = load_digits("test", size=cfg.size)
        g = torch.Generator().manual_seed(cfg.seed)
        n = min(int(sh.get("n_images", 300)), len(test))
        test = test.subset(torch.randperm(len(test), generator=g)[:n])
        self.test = test
        self.general = ShiftSuite(test.images, test.labels, names, sev, cfg.seed)
        self.task = digits_rewrite_task(size=cfg.size, seed=cfg.seed, **cfg.task)
        n_edit = int(sh.get("n_edit_images", 200))
        pick = torch.randperm(len(self.task.test_labels), generator=g)[:n_edit]
        self.edit_suite = ShiftSuite(
            self.task.test_images[pick], self.task.test_labels[pick], names, sev, cfg.seed
        )
        self.heldout = {s: x[pick] for s, x in self.task.heldout_styles.items()}
        self.untouched = torch.isin(test.labels, torch.tensor(self.task.unaffected_classes))

    def _evaluate(self, clf: Classifier, with_edit: bool = True) -> _Eval:
        general = self.general.predictions(clf)
        if not with_edit:
            return _Eval(general, {}, {})
        return _Eval(
            general,
            self.edit_suite.predictions(clf),
            {s: clf.predict(x) for s, x in self.heldout.items()},
        )

    def _done(self) -> set[str]:
        return {r["cell"] for r in self.run.results if r.get("metric") == "cell_done"}

    def _acc_rows(self, base: dict[str, Any], ev: _Eval) -> list[dict[str, Any]]:
        rows = []
        for set_name, preds, labels in (
            ("general", ev.general, self.general.labels),
            ("edit", ev.edit, self.edit_suite.labels),
        ):
            for (c, s), p in preds.items():
                rows.append(
                    {
                        **base,
                        "metric": "accuracy",
                        "set": set_name,
                        "corruption": c,
                        "severity": s,
                        "value": accuracy(p, labels),
                    }
                )
        return rows

    def run_all(self) -> Path:
        cfg = self.cfg
        t0 = time.perf_counter()
        self.run.start(cfg.to_dict(), {"task": None})
        self._suites()
        atomic_write_text(
            self.run.path / "task.json", __import__("json").dumps(self.task.summary(), indent=2)
        )
        done = self._done()
        self.log(
            f"suites ready ({len(self.general.sets)} shift sets) in {time.perf_counter() - t0:.0f}s"
        )
        for spec in cfg.classifiers:
            family = spec["family"]
            base = train_classifier(
                family, spec.get("width", 8), spec.get("epochs", 8), cfg.seed, cfg.size
            )
            fit = self._testbed(family, base, done)
            base_ev = self._evaluate(base)
            base_acc = self.general.accuracies(base_ev.general)
            cell = f"{base.name}/base"
            if cell not in done:
                meta = {
                    "cell": cell,
                    "model": base.name,
                    "method": "none",
                    "layer": None,
                    "alpha": 0.0,
                    "schedule": "unedited",
                }
                rows = self._acc_rows(meta, base_ev)
                rows += self._summary_rows(meta, base_ev, base_ev, base_acc, fit)
                self.run.results.append([*rows, {**meta, "metric": "cell_done", "value": 1}])
            for method, hp in cfg.methods.items():
                for layer_ref in cfg.layers_for(family):
                    layer = base.layer(layer_ref)
                    cells = {a: f"{base.name}/{method}/{layer}/a{a:g}" for a in cfg.alphas}
                    if all(c in done for c in cells.values()):
                        continue
                    t = time.perf_counter()
                    delta = get_editor(method, {**(hp or {}), "layer": layer}).edit(base, self.task)
                    t_edit = time.perf_counter() - t
                    for alpha, cell in cells.items():
                        if cell in done:
                            continue
                        d = delta if alpha == 1.0 else interpolate(delta, alpha, layer)
                        with d.applied(base.model):
                            ev = self._evaluate(base)
                        meta = {
                            "cell": cell,
                            "model": base.name,
                            "method": method,
                            "layer": layer,
                            "layer_index": base.layers.index(layer),
                            "alpha": alpha,
                            "schedule": "after-edit",
                        }
                        rows = self._acc_rows(meta, ev)
                        rows += self._summary_rows(meta, ev, base_ev, base_acc, fit)
                        rows.append({**meta, "metric": "edit_seconds", "value": t_edit})
                        rows.append(
                            {
                                **meta,
                                "metric": "delta_fro_norm",
                                "value": sum(v["fro"] ** 2 for v in d.norms().values()) ** 0.5,
                            }
                        )
                        self.run.results.append(
                            [*rows, {**meta, "metric": "cell_done", "value": 1}]
                        )
                        self.log(f"{cell}: {time.perf_counter() - t:.1f}s")
        self.run.export()
        self.log(f"study finished in {time.perf_counter() - t0:.0f}s")
        return self.run.path

    def _testbed(self, family: str, base: Classifier, done: set[str]) -> LogitFit:
        tb = self.cfg.testbed
        models = train_testbed(
            family,
            tb.get("widths", [4, 8]),
            tb.get("epochs", [1, 2, 4]),
            self.cfg.seed,
            self.cfg.size,
        )
        models = [m for m in models if m.name != base.name] + [base]
        for m in models:
            cell = f"testbed/{m.name}"
            if cell in done:
                continue
            acc = self.general.accuracies(self._evaluate(m, with_edit=False).general)
            meta = {"cell": cell, "model": m.name, "family": family, "schedule": "testbed"}
            self.run.results.append([
                {**meta, "metric": "clean_acc", "value": acc[("clean", 0)]},
                {**meta, "metric": "shifted_acc", "value": shifted_accuracy(acc)},
                {**meta, "metric": "cell_done", "value": 1},
            ])  # fmt: skip
        rows = [
            r
            for r in self.run.results
            if r.get("schedule") == "testbed" and r.get("family") == family
        ]
        clean = {r["model"]: r["value"] for r in rows if r["metric"] == "clean_acc"}
        shifted = {r["model"]: r["value"] for r in rows if r["metric"] == "shifted_acc"}
        names = sorted(clean)
        return fit_logit_linear([clean[n] for n in names], [shifted[n] for n in names])

    def _summary_rows(
        self, meta: dict[str, Any], ev: _Eval, base_ev: _Eval, base_acc: dict, fit: LogitFit
    ) -> list[dict[str, Any]]:
        acc = self.general.accuracies(ev.general)
        e_labels = self.edit_suite.labels
        clean_key = ("clean", 0)
        shifted_keys = [k for k in ev.edit if k != clean_key]
        vals = {
            "clean_acc": acc[clean_key],
            "shifted_acc": shifted_accuracy(acc),
            "relative_robustness": shifted_accuracy(acc) - shifted_accuracy(base_acc),
            "effective_robustness": fit.effective_robustness(acc[clean_key], shifted_accuracy(acc)),
            "mce": mean_corruption_error(acc, base_acc),
            "untouched_acc": accuracy(
                ev.general[clean_key][self.untouched], self.general.labels[self.untouched]
            ),
            "edit_success": accuracy(ev.edit[clean_key], e_labels),
            "errors_corrected": errors_corrected(
                base_ev.edit[clean_key], ev.edit[clean_key], e_labels
            ),
            "edit_success_shifted": _mean(accuracy(ev.edit[k], e_labels) for k in shifted_keys),
            "errors_corrected_shifted": _mean(
                errors_corrected(base_ev.edit[k], ev.edit[k], e_labels) for k in shifted_keys
            ),
            "heldout_style_acc": _mean(accuracy(p, e_labels) for p in ev.heldout.values()),
        }
        return [{**meta, "metric": k, "value": v} for k, v in vals.items()]


def _mean(xs) -> float:  # noqa: ANN001
    vals = [x for x in xs if not math.isnan(x)]
    return sum(vals) / len(vals) if vals else float("nan")
