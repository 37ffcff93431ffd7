"""A folder of corrupted images as a shift set, laid out as ImageNet-C (Hendrycks & Dietterich
2019): `ROOT/CORRUPTION/SEVERITY/CLASS/IMAGE` (severity a positive integer, images .png, .jpg
or .jpeg), optionally with the clean images as an ImageFolder (`CLEAN/CLASS/IMAGE`).

Classes are mapped by folder name: to the model's class names when given (a folder name the
model does not know is refused, naming the folder), otherwise to the sorted folder names
(torchvision's ImageFolder convention, which for ImageNet's synset folders is its class order).
Images are read with Pillow (a dependency of matplotlib, so always present with editrisk),
resized so the shorter side is `size` and centre-cropped to size x size, and kept as uint8.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from editrisk.errors import InputError
from editrisk.vision.metrics import Key, accuracy

SHIFT_SUFFIXES = (".png", ".jpg", ".jpeg")
Progress = Callable[[str, int, int], None]


def read_square(path: Path, size: int) -> torch.Tensor:
    """One image as uint8 (3, size, size): shorter side resized to `size`, centre crop."""
    try:
        from PIL import Image
    except ImportError as err:  # pragma: no cover - Pillow comes with matplotlib
        raise InputError(
            f"reading {', '.join(SHIFT_SUFFIXES)} images needs Pillow (pip install pillow)",
            file=str(path),
        ) from err
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            w, h = im.size
            scale = size / min(w, h)
            im = im.resize((max(size, round(w * scale)), max(size, round(h * scale))),
                           Image.BILINEAR)  # fmt: skip
            left, top = (im.size[0] - size) // 2, (im.size[1] - size) // 2
            arr = np.asarray(im.crop((left, top, left + size, top + size)), dtype=np.uint8)
    except OSError as err:
        raise InputError(f"unreadable image ({err})", file=str(path)) from err
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)


def _images(folder: Path) -> list[Path]:
    return sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in SHIFT_SUFFIXES)


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(d for d in folder.iterdir() if d.is_dir())


@dataclass
class FolderShiftSet:
    """Images of every (corruption, severity) as uint8 (N, 3, H, W) with their labels, plus
    ("clean", 0) when clean images were given. The same interface as `ShiftSuite`
    (`predictions`, `accuracies`), except that each set carries its own labels."""

    root: Path
    classes: tuple[str, ...]
    sets: dict[Key, torch.Tensor]
    labels_of: dict[Key, torch.Tensor]

    @property
    def labels(self) -> torch.Tensor:
        """Labels of the clean set (what `ShiftSuite.labels` is for every set)."""
        if ("clean", 0) not in self.labels_of:
            raise InputError("no clean images given (clean=...)", file=str(self.root))
        return self.labels_of[("clean", 0)]

    @property
    def corruptions(self) -> list[str]:
        return sorted({c for c, _ in self.sets if c != "clean"})

    def predictions(self, clf: Any) -> dict[Key, torch.Tensor]:
        """Predicted classes of `clf` on every set."""
        return {k: clf.predict(x) for k, x in self.sets.items()}

    def accuracies(self, preds: dict[Key, torch.Tensor]) -> dict[Key, float]:
        return {k: accuracy(p, self.labels_of[k]) for k, p in preds.items()}

    def summary(self) -> dict[Key, int]:
        """Images per set."""
        return {k: int(v.shape[0]) for k, v in self.sets.items()}


def load_shift_folder(
    root: str | Path,
    classes: Sequence[str] | None = None,
    size: int = 224,
    *,
    clean: str | Path | None = None,
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] | None = None,
    limit_per_class: int | None = None,
    progress: Progress | None = None,
) -> FolderShiftSet:
    """Read an ImageNet-C-style folder (see the module docstring) as a shift set.

    `classes`: the model's class names, in output order (default: the sorted class folders);
    `corruptions`/`severities`: read only these; `limit_per_class`: the first N images (by
    file name) of each class in each set, for quick runs."""
    root = Path(root)
    if not root.is_dir():
        raise InputError("shift folder not found", file=str(root))
    plan: list[tuple[Key, Path]] = []
    for cdir in _class_dirs(root):
        if corruptions is not None and cdir.name not in corruptions:
            continue
        for sdir in _class_dirs(cdir):
            if not sdir.name.isdigit() or int(sdir.name) < 1:
                raise InputError(
                    "expected severity folders named 1, 2, ... (layout CORRUPTION/SEVERITY/"
                    f"CLASS/IMAGE), found '{sdir.name}'",
                    file=str(sdir),
                )
            if severities is None or int(sdir.name) in severities:
                plan.append(((cdir.name, int(sdir.name)), sdir))
    if corruptions is not None:
        found = {k[0] for k, _ in plan}
        absent = [c for c in corruptions if c not in found]
        if absent:
            raise InputError(f"no folder for corruption(s) {absent}", file=str(root))
    if clean is not None:
        if not Path(clean).is_dir():
            raise InputError("clean image folder not found", file=str(clean))
        plan.insert(0, (("clean", 0), Path(clean)))
    if not plan:
        raise InputError("no CORRUPTION/SEVERITY folders (ImageNet-C layout)", file=str(root))
    files: dict[Key, list[tuple[Path, str]]] = {}
    for key, folder in plan:
        found_files = []
        for cls in _class_dirs(folder):
            imgs = _images(cls)
            found_files += [(f, cls.name) for f in imgs[: limit_per_class or None]]
        if not found_files:
            raise InputError(
                f"no {'/'.join(SHIFT_SUFFIXES)} images under CLASS sub-folders", file=str(folder)
            )
        files[key] = found_files
    names = tuple(classes) if classes is not None else tuple(
        sorted({c for fs in files.values() for _, c in fs})
    )  # fmt: skip
    index = {c: i for i, c in enumerate(names)}
    for key, fs in files.items():
        unknown = sorted({c for _, c in fs if c not in index})
        if unknown:
            shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
            raise InputError(
                f"class folder '{unknown[0]}' is not a class of the model ({shown})",
                file=str(dict(plan)[key] / unknown[0]),
            )
    total, done = sum(len(fs) for fs in files.values()), 0
    if progress is not None:
        progress("reading images", 0, total)
    sets, labels = {}, {}
    for key, fs in files.items():
        imgs = []
        for path, _ in fs:
            imgs.append(read_square(path, size))
            done += 1
            if progress is not None:
                progress("reading images", done, total)
        sets[key] = torch.stack(imgs)
        labels[key] = torch.tensor([index[c] for _, c in fs], dtype=torch.int64)
    return FolderShiftSet(root, names, sets, labels)
