"""The vision family: a digits classifier from the architecture table, concept-rewrite edit
sets, accuracy clean and under corruptions, relative and effective robustness (Taori et al.
2020, against a testbed of checkpoints), and the robustness of the edit itself."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import torch
from pydantic import Field, field_validator
from torch import nn

from editrisk.delta import Delta
from editrisk.editors.base import Editor
from editrisk.engine.config import Section, parse_section
from editrisk.families import register_family
from editrisk.families.base import Family, Row

TOP1 = "top1"


class VisionModel(Section):
    OMIT_AT_DEFAULT = frozenset({"weights", "classes"})

    arch: str = Field("vgg", description="built-in vgg/resnet, or a standard model (vgg16, ...)")
    width: int = Field(8, ge=1)
    epochs: int = Field(8, ge=1)
    size: int = Field(32, ge=8, description="images resized to size x size RGB")
    weights: str | None = Field(None, description="standard model: local weights file")
    classes: str | None = Field(None, description="standard model: class names, one a line")

    @field_validator("arch")
    @classmethod
    def _arch(cls, v: str) -> str:
        from editrisk.vision.zoo import STANDARD_MODELS

        if v not in ("vgg", "resnet", *STANDARD_MODELS):
            raise ValueError(f"unknown arch {v!r}: vgg, resnet or one of {list(STANDARD_MODELS)}")
        return v


class Testbed(Section):
    widths: list[int] = Field(default_factory=lambda: [4, 8])
    epochs: list[int] = Field(default_factory=lambda: [1, 2, 4])


class VisionData(Section):
    OMIT_AT_DEFAULT = frozenset({"shift_folder", "clean_folder", "limit_per_class"})

    n_images: int = Field(300, ge=1, description="general test images (all classes)")
    n_edit_images: int | None = Field(None, ge=1, description="styled test images (None: all)")
    testbed: Testbed | None = Field(None, description="checkpoints for effective robustness")
    shift_folder: str | None = Field(
        None, description="ImageNet-C layout CORRUPTION/SEVERITY/CLASS/IMAGE (instead of digits)"
    )
    clean_folder: str | None = Field(None, description="with shift_folder: CLASS/IMAGE, clean")
    limit_per_class: int | None = Field(None, ge=1, description="shift_folder: images per class")


class VisionEditSet(Section):
    """A Santurkar-style concept rewrite built from the digits (`digits_rewrite_task`), or
    read from `folder` (`task_from_folder`: train/CLASS/x.png + x.mask.png, test/CLASS/...)."""

    OMIT_AT_DEFAULT = frozenset({"folder"})

    folder: str | None = None
    style: str = "checker"
    classes: list[int] = Field(default_factory=lambda: [0, 1, 2, 3, 4])
    n_train: int = Field(10, ge=1)
    region: str = "background"
    heldout_styles: list[str] | None = None


class VisionEvaluation(Section):
    corruptions: list[str] | Literal["all"] = Field(
        default_factory=lambda: ["gaussian_noise", "defocus_blur", "contrast"]
    )
    severities: list[int] = Field(default_factory=lambda: [1, 3, 5])


def _mean(xs: Iterable[float]) -> float:
    vals = [x for x in xs if not math.isnan(x)]
    return sum(vals) / len(vals) if vals else float("nan")


@register_family
class VisionFamily(Family):
    name = "vision"
    Data = VisionData
    EditSet = VisionEditSet
    Evaluation = VisionEvaluation

    @classmethod
    def resolve_model(cls, model: Any, source: str) -> Any:
        return parse_section(VisionModel, model, source, "model").model_dump(mode="json")

    def __init__(self, cfg: Any, seed: int) -> None:
        from editrisk.vision.corruptions import CORRUPTIONS
        from editrisk.vision.data import load_digits
        from editrisk.vision.metrics import ShiftSuite
        from editrisk.vision.sources import (
            folder_shift_set,
            folder_task,
            study_classifier,
            untouched_mask,
        )
        from editrisk.vision.tasks import digits_rewrite_task

        super().__init__(cfg, seed)
        m = VisionModel.model_validate(cfg.model)
        self.data = VisionData.model_validate(cfg.data)
        ev = VisionEvaluation.model_validate(cfg.evaluation)
        names = list(CORRUPTIONS) if ev.corruptions == "all" else ev.corruptions
        from_folder = self.data.shift_folder is not None
        unknown = sorted(set(names) - set(CORRUPTIONS))
        if unknown and not from_folder:  # a folder's corruptions are named by its folders
            from editrisk.errors import EditriskError

            raise EditriskError(f"evaluation.corruptions: unknown {unknown}")
        self.clf = study_classifier(m, seed)
        g = torch.Generator().manual_seed(seed)
        if from_folder:
            wanted = None if ev.corruptions == "all" else ev.corruptions
            self.general = folder_shift_set(
                self.data, self.clf.classes, m.size, wanted, ev.severities
            )
            names = [c for c in names if c in CORRUPTIONS]  # edit sets: synthetic ones
            labels = self.general.labels
        else:
            test = load_digits("test", size=m.size)
            n = min(self.data.n_images, len(test))
            test = test.subset(torch.randperm(len(test), generator=g)[:n])
            self.general = ShiftSuite(test.images, test.labels, names, ev.severities, seed)
            labels = test.labels
        self.tasks, self.suites, self.heldout = {}, {}, {}
        affected: set[int] = set()
        for name, spec in cfg.edit_sets.items():
            s = VisionEditSet.model_validate(spec)
            task = folder_task(s, self.clf.classes, m.size) if s.folder else digits_rewrite_task(
                s.style, tuple(s.classes), s.n_train, s.region,
                tuple(s.heldout_styles) if s.heldout_styles else None, seed, m.size,
            )  # fmt: skip
            task.name = name
            n_edit = self.data.n_edit_images or len(task.test_labels)
            pick = torch.randperm(len(task.test_labels), generator=g)[:n_edit]
            self.tasks[name] = task
            self.suites[name] = ShiftSuite(
                task.test_images[pick], task.test_labels[pick], names, ev.severities, seed
            )
            self.heldout[name] = {st: x[pick] for st, x in task.heldout_styles.items()}
            affected |= set(task.affected_classes)
        self.untouched = untouched_mask(labels, affected)
        # the unedited model's predictions: the baseline of every relative measure
        self.base_general = self.general.accuracies(self.general.predictions(self.clf))
        self.base_edit = {k: s.predictions(self.clf) for k, s in self.suites.items()}
        self.fit, self.testbed_rows = self._testbed(m)

    @property
    def module(self) -> nn.Module:
        return self.clf.model

    @property
    def handle(self) -> Any:
        return self.clf

    def model_info(self) -> dict[str, Any]:
        n = sum(p.numel() for p in self.clf.model.parameters())
        return {"model": self.clf.name, "fingerprint": self.clf.fingerprint(), "n_params": n}

    def edit_set(self, name: str) -> list[Any]:
        return [self.tasks[name]]

    def request_id(self, request: Any) -> str:
        return request.name

    def n_layers(self) -> int:
        return len(self.clf.layers)

    def layer_index(self, param: str) -> int | None:
        module = param.rsplit(".", 1)[0]
        layers = self.clf.layers
        return layers.index(module) if module in layers else None

    def layer_params(self, layer: int) -> dict[str, Any]:
        return {"layer": layer}

    def edit(self, editor: Editor, requests: Sequence[Any]) -> Delta:
        (task,) = requests  # a vision edit set is one concept rewrite
        return editor.edit(self.clf, task).with_layers(self.layer_index)

    def evaluate(self, what: str, requests: Sequence[Any]) -> list[Row]:
        from editrisk.vision.metrics import accuracy, errors_corrected

        if what == "general":
            return self._general()
        (task,) = requests
        suite, base = self.suites[task.name], self.base_edit[task.name]
        preds = suite.predictions(self.clf)
        labels, clean = suite.labels, ("clean", 0)
        shifted = [k for k in preds if k != clean]
        summary = {
            "kind": "summary",
            "n": len(labels),
            f"edit_success.{TOP1}": accuracy(preds[clean], labels),
            f"errors_corrected.{TOP1}": errors_corrected(base[clean], preds[clean], labels),
            f"edit_success_shifted.{TOP1}": _mean(accuracy(preds[k], labels) for k in shifted),
            f"errors_corrected_shifted.{TOP1}": _mean(
                errors_corrected(base[k], preds[k], labels) for k in shifted
            ),
            f"heldout_style_acc.{TOP1}": _mean(
                accuracy(self.clf.predict(x), labels) for x in self.heldout[task.name].values()
            ),
        }
        return [summary, *self._accuracy_rows("edit", suite.accuracies(preds))]

    def _general(self) -> list[Row]:
        from editrisk.vision.metrics import accuracy, mean_corruption_error, shifted_accuracy

        preds = self.general.predictions(self.clf)
        acc = self.general.accuracies(preds)
        clean = ("clean", 0)
        row = {
            "kind": "general",
            f"clean_acc.{TOP1}": acc[clean],
            f"shifted_acc.{TOP1}": shifted_accuracy(acc),
            f"relative_robustness.{TOP1}": shifted_accuracy(acc)
            - shifted_accuracy(self.base_general),
            "mce.vs_unedited": mean_corruption_error(acc, self.base_general),
            f"untouched_acc.{TOP1}": accuracy(
                preds[clean][self.untouched], self.general.labels[self.untouched]
            ),
        }
        if self.fit is not None:
            row["effective_robustness.logit_fit"] = self.fit.effective_robustness(
                acc[clean], shifted_accuracy(acc)
            )
        return [row, *self._accuracy_rows("general", acc)]

    @staticmethod
    def _accuracy_rows(which: str, acc: dict[tuple[str, int], float]) -> list[Row]:
        return [
            {"kind": "accuracy", "set": which, "corruption": c, "severity": s, f"acc.{TOP1}": v}
            for (c, s), v in acc.items()
        ]

    def _testbed(self, m: VisionModel) -> tuple[Any, list[Row]]:
        """The logit-linear fit of shifted on clean accuracy across the testbed (with the
        unedited model itself), and one row per testbed model."""
        from editrisk.evaluation.robustness import fit_logit_linear
        from editrisk.vision.classifiers import train_testbed
        from editrisk.vision.metrics import shifted_accuracy

        tb = self.data.testbed
        if tb is None:
            return None, []
        if m.arch not in ("vgg", "resnet"):
            from editrisk.errors import EditriskError

            raise EditriskError("data.testbed trains digits checkpoints; not for a standard model")
        models = train_testbed(m.arch, tb.widths, tb.epochs, self.seed, m.size)
        models = [c for c in models if c.name != self.clf.name] + [self.clf]
        rows = []
        for c in models:
            acc = self.general.accuracies(self.general.predictions(c))
            rows.append(
                {
                    "kind": "testbed",
                    "testbed_model": c.name,
                    f"clean_acc.{TOP1}": acc[("clean", 0)],
                    f"shifted_acc.{TOP1}": shifted_accuracy(acc),
                }
            )
        fit = fit_logit_linear(
            [r[f"clean_acc.{TOP1}"] for r in rows], [r[f"shifted_acc.{TOP1}"] for r in rows]
        )
        return fit, rows

    def reference_rows(self) -> list[Row]:
        return list(self.testbed_rows)
