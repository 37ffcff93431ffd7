"""Concept-rewrite edit tasks in the style of Santurkar et al. (2021).

A task says "images of these classes showing concept S (a style/texture inside a mask) should be
treated as if S were absent". It carries exemplars (styled image, clean image, mask, label), a
held-out test set with the same style, the same test images under held-out styles (the edit's
own distribution shift), reference images of the training distribution (for key statistics) and
the classes the edit should and should not affect.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from editrisk.errors import EditriskError, InputError
from editrisk.vision.data import IMAGE_SUFFIXES, ImageSet, load_digits, read_image

Texture = Callable[[int, int, int, torch.Generator], torch.Tensor]


def _grid(n: int, size: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel coordinates (N, H, W) shifted by a random per-image phase."""
    t = torch.arange(size, dtype=torch.float32)
    ys, xs = torch.meshgrid(t, t, indexing="ij")
    off = torch.rand(n, 2, 1, 1, generator=g) * size
    return ys + off[:, 0], xs + off[:, 1]


def _colour(pattern: torch.Tensor, rgb: tuple[float, float, float]) -> torch.Tensor:
    return pattern.unsqueeze(1) * torch.tensor(rgb).view(1, 3, 1, 1)


def stripes(n: int, size: int, period: float, g: torch.Generator) -> torch.Tensor:
    ys, xs = _grid(n, size, g)
    return _colour(0.5 + 0.5 * torch.sin(2 * math.pi * (xs + ys) / period), (0.9, 0.7, 0.2))


def checker(n: int, size: int, period: float, g: torch.Generator) -> torch.Tensor:
    ys, xs = _grid(n, size, g)
    cells = (torch.floor(xs / (period / 2)) + torch.floor(ys / (period / 2))) % 2
    return _colour(cells, (0.3, 0.8, 0.9))


def dots(n: int, size: int, period: float, g: torch.Generator) -> torch.Tensor:
    ys, xs = _grid(n, size, g)
    dy = (ys % period) - period / 2
    dx = (xs % period) - period / 2
    return _colour((torch.sqrt(dx**2 + dy**2) < period / 3.5).float(), (0.9, 0.3, 0.6))


def rings(n: int, size: int, period: float, g: torch.Generator) -> torch.Tensor:
    ys, xs = _grid(n, size, g)
    r = torch.sqrt((ys - 1.5 * size) ** 2 + (xs - 1.5 * size) ** 2)
    return _colour(0.5 + 0.5 * torch.cos(2 * math.pi * r / period), (0.5, 0.9, 0.4))


def grain(n: int, size: int, period: float, g: torch.Generator) -> torch.Tensor:
    coarse = torch.rand(
        n, 3, max(2, round(size / period * 2)), max(2, round(size / period * 2)), generator=g
    )
    return F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False) * 0.8


STYLES: dict[str, Callable[[int, int, float, torch.Generator], torch.Tensor]] = {
    "stripes": stripes,
    "checker": checker,
    "dots": dots,
    "rings": rings,
    "grain": grain,
}


def apply_style(
    images: torch.Tensor,
    masks: torch.Tensor,
    style: str,
    seed: int = 0,
    period: float = 6.0,
    strength: float = 1.0,
) -> torch.Tensor:
    """Blend texture `style` into `images` inside `masks` (N, 1, H, W in [0, 1])."""
    if style not in STYLES:
        raise EditriskError(f"unknown style '{style}'; choose from {sorted(STYLES)}")
    g = torch.Generator().manual_seed(seed)
    size = images.shape[-1]
    tex = STYLES[style](images.shape[0], size, period * size / 32, g)
    m = masks * strength
    return (images * (1 - m) + tex * m).clamp(0, 1)


def digit_masks(
    images: torch.Tensor, region: str = "background", threshold: float = 0.2
) -> torch.Tensor:
    """Masks (N, 1, H, W) of the background (default) or the strokes of digit images."""
    ink = images.mean(1, keepdim=True) > threshold
    if region == "background":
        # keep a one-pixel margin around the strokes unstyled so the digit's shape survives
        ink = F.max_pool2d(ink.float(), 3, stride=1, padding=1) > 0
        return (~ink).float()
    if region == "foreground":
        return ink.float()
    raise EditriskError(f"region must be 'background' or 'foreground', not '{region}'")


@dataclass
class ConceptRewriteTask:
    """One concept rewrite: exemplars to edit on and the sets to judge the edit by."""

    name: str
    style: str
    train_images: torch.Tensor  # styled exemplars (N, 3, H, W)
    train_clean: torch.Tensor | None  # the same exemplars without the style (rewrite targets)
    train_masks: torch.Tensor  # where the style appears (N, 1, H, W)
    train_labels: torch.Tensor
    test_images: torch.Tensor  # held-out images, same concept and style
    test_labels: torch.Tensor
    heldout_styles: dict[str, torch.Tensor] = field(default_factory=dict)  # same test images
    reference: torch.Tensor | None = None  # clean images of the training distribution
    affected_classes: tuple[int, ...] = ()
    unaffected_classes: tuple[int, ...] = ()
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = self.train_images.shape[0]
        if n == 0:
            raise EditriskError(f"task '{self.name}' has no exemplars")
        if self.train_masks.shape[0] != n or self.train_labels.shape[0] != n:
            raise EditriskError(f"task '{self.name}': exemplars, masks and labels differ in count")
        if self.train_clean is not None and self.train_clean.shape != self.train_images.shape:
            raise EditriskError(f"task '{self.name}': clean exemplars differ in shape")

    def summary(self) -> dict:
        return {
            "task": self.name,
            "style": self.style,
            "n_train": self.train_images.shape[0],
            "n_test": self.test_images.shape[0],
            "heldout_styles": sorted(self.heldout_styles),
            "affected": list(self.affected_classes),
            "unaffected": list(self.unaffected_classes),
            **self.info,
        }


def digits_rewrite_task(
    style: str = "stripes",
    classes: tuple[int, ...] = (0, 1, 2, 3, 4),
    n_train: int = 10,
    region: str = "background",
    heldout_styles: tuple[str, ...] | None = None,
    seed: int = 0,
    size: int = 32,
    n_reference: int = 512,
) -> ConceptRewriteTask:
    """A rewrite task built deterministically from the digits: `classes` drawn on `style`.

    Exemplars come from the train split, the test set from the test split (all its images of
    `classes`), each styled with an independent random texture phase.
    """
    if not classes or any(not 0 <= c <= 9 for c in classes):
        raise EditriskError(f"digit classes must be in 0..9; got {classes}")
    train, test = load_digits("train", size=size), load_digits("test", size=size)
    g = torch.Generator().manual_seed(seed)
    pool = train.of_classes(classes)
    if n_train > len(pool):
        raise EditriskError(f"n_train={n_train} exceeds the {len(pool)} train images of {classes}")
    pick = torch.randperm(len(pool), generator=g)[:n_train]
    ex = pool.subset(pick)
    masks = digit_masks(ex.images, region)
    tst = test.of_classes(classes)
    tmask = digit_masks(tst.images, region)
    others = (
        heldout_styles if heldout_styles is not None else tuple(s for s in STYLES if s != style)
    )
    ref = train.subset(torch.randperm(len(train), generator=g)[:n_reference]).images
    return ConceptRewriteTask(
        name=f"digits-{style}-{region}",
        style=style,
        train_images=apply_style(ex.images, masks, style, seed),
        train_clean=ex.images,
        train_masks=masks,
        train_labels=ex.labels,
        test_images=apply_style(tst.images, tmask, style, seed + 1),
        test_labels=tst.labels,
        heldout_styles={s: apply_style(tst.images, tmask, s, seed + 2) for s in others},
        reference=ref,
        affected_classes=tuple(classes),
        unaffected_classes=tuple(c for c in range(10) if c not in classes),
        info={"region": region, "seed": seed, "size": size},
    )


def task_from_images(
    name: str,
    images: torch.Tensor,
    masks: torch.Tensor,
    labels: torch.Tensor,
    test: ImageSet,
    clean: torch.Tensor | None = None,
    reference: torch.Tensor | None = None,
    n_classes: int | None = None,
) -> ConceptRewriteTask:
    """A task from a user's own exemplars (styled images + masks + labels) and test set."""
    affected = tuple(sorted({int(c) for c in labels.tolist()}))
    n_classes = n_classes or len(test.classes)
    return ConceptRewriteTask(
        name=name,
        style="user",
        train_images=images,
        train_clean=clean,
        train_masks=(masks > 0.5).float(),
        train_labels=labels,
        test_images=test.images,
        test_labels=test.labels,
        reference=reference if reference is not None else clean,
        affected_classes=affected,
        unaffected_classes=tuple(c for c in range(n_classes) if c not in affected),
    )


def task_from_folder(
    root: str | Path, classes: tuple[str, ...], size: int = 32
) -> ConceptRewriteTask:
    """A task from files: `root/{train,test}/<class>/<x>.png` with `<x>.mask.png` beside each
    train image and optionally `<x>.clean.png` (the image without the concept)."""
    root = Path(root)
    imgs, masks, cleans, labels = [], [], [], []
    for ci, cname in enumerate(classes):
        folder = root / "train" / cname
        if not folder.is_dir():
            continue
        for f in sorted(folder.iterdir()):
            if f.suffix.lower() not in IMAGE_SUFFIXES or ".mask" in f.name or ".clean" in f.name:
                continue
            mask_path = f.with_name(f"{f.stem}.mask{f.suffix}")
            if not mask_path.is_file():
                raise InputError("exemplar has no mask file beside it", file=str(mask_path))
            imgs.append(read_image(f, size))
            masks.append(read_image(mask_path, size, mode="L"))
            clean_path = f.with_name(f"{f.stem}.clean{f.suffix}")
            cleans.append(read_image(clean_path, size) if clean_path.is_file() else None)
            labels.append(ci)
    if not imgs:
        raise InputError("no exemplars under train/<class>/", file=str(root))
    test_imgs, test_labels = [], []
    for ci, cname in enumerate(classes):
        folder = root / "test" / cname
        for f in sorted(folder.iterdir()) if folder.is_dir() else []:
            if f.suffix.lower() in IMAGE_SUFFIXES:
                test_imgs.append(read_image(f, size))
                test_labels.append(ci)
    if not test_imgs:
        raise InputError("no test images under test/<class>/", file=str(root))
    clean = torch.stack(cleans) if all(c is not None for c in cleans) else None
    return task_from_images(
        root.name,
        torch.stack(imgs),
        torch.stack(masks),
        torch.tensor(labels),
        ImageSet(torch.stack(test_imgs), torch.tensor(test_labels), classes),
        clean=clean,
    )
