"""Where a vision study's model, evaluation images and edit sets come from: the built-in digits
(trained in seconds, corrupted synthetically) or a user's own files (a standard VGG/ResNet with
local weights, an ImageNet-C-style shift folder beside a clean ImageFolder, concept-rewrite
exemplars from a folder). The vision family asks this module; it does not care which."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from editrisk.errors import EditriskError, InputError
from editrisk.files import read_text


def read_class_names(path: str | Path) -> tuple[str, ...]:
    """Class names, one a line in output order (blank lines and `#` comments skipped)."""
    lines = [x.strip() for x in read_text(Path(path)).splitlines()]
    names = tuple(x for x in lines if x and not x.startswith("#"))
    if not names:
        raise InputError("no class names (one a line)", file=str(path))
    if len(set(names)) != len(names):
        dup = next(x for x in names if names.count(x) > 1)
        raise InputError(f"class name {dup!r} appears twice", file=str(path))
    return names


def study_classifier(m: Any, seed: int) -> Any:
    """The classifier of a study's `model` section: a built-in digits model (trained and
    cached) or a standard model with the user's weights (`m.weights`, classes `m.classes`)."""
    from editrisk.vision.zoo import STANDARD_MODELS, load_standard

    if m.arch in STANDARD_MODELS:
        classes = read_class_names(m.classes) if m.classes else None
        return load_standard(m.arch, m.weights, classes, seed=seed)
    if m.weights or m.classes:
        raise EditriskError(
            f"model.weights and model.classes are for the standard models "
            f"({', '.join(STANDARD_MODELS)}), not the built-in '{m.arch}' (trained on digits)"
        )
    from editrisk.vision.classifiers import train_classifier

    return train_classifier(m.arch, m.width, m.epochs, seed, m.size)


def folder_shift_set(
    data: Any,
    classes: Sequence[str],
    size: int,
    corruptions: Sequence[str] | None,
    severities: Sequence[int],
    progress: Any = None,
) -> Any:
    """The general evaluation set read from `data.shift_folder` (ImageNet-C layout) with the
    clean images of `data.clean_folder`; `corruptions` None reads every corruption found."""
    from editrisk.vision.shiftfolder import load_shift_folder

    if not data.clean_folder:
        raise EditriskError("data.shift_folder needs data.clean_folder (the clean images)")
    return load_shift_folder(
        data.shift_folder, classes, size, clean=data.clean_folder, corruptions=corruptions,
        severities=severities, limit_per_class=data.limit_per_class, progress=progress,
    )  # fmt: skip


def folder_task(spec: Any, classes: Sequence[str], size: int) -> Any:
    """A concept-rewrite task from files (`spec.folder`: train/CLASS/x.png + x.mask.png [+
    x.clean.png], test/CLASS/...), classes named as the model names them."""
    from editrisk.vision.tasks import task_from_folder

    return task_from_folder(spec.folder, tuple(classes), size)


def untouched_mask(labels: torch.Tensor, affected: set[int]) -> torch.Tensor:
    """True for the images whose class no edit set affects."""
    return ~torch.isin(labels, torch.tensor(sorted(affected), dtype=labels.dtype))
