"""Image data sets as tensors: sklearn digits (offline), CIFAR-10 binary batches, ImageFolder.

Every loader returns an `ImageSet`: float images (N, 3, H, W) in [0, 1] and int64 labels.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from editrisk.errors import EditriskError, InputError

DIGITS_VERSION = "sklearn-digits-v1"  # bump when the preprocessing below changes
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


@dataclass
class ImageSet:
    """Images (N, 3, H, W) float in [0, 1], labels (N,) int64 and class names."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.shape[0] != self.labels.shape[0]:
            raise EditriskError(
                f"ImageSet needs images (N, C, H, W) and labels (N,); got "
                f"{tuple(self.images.shape)} and {tuple(self.labels.shape)}"
            )

    def __len__(self) -> int:
        return self.labels.shape[0]

    def subset(self, index: torch.Tensor) -> ImageSet:
        return ImageSet(self.images[index], self.labels[index], self.classes)

    def of_classes(self, classes: list[int] | tuple[int, ...]) -> ImageSet:
        keep = torch.isin(self.labels, torch.tensor(list(classes)))
        return self.subset(keep.nonzero().squeeze(1))


@functools.lru_cache(maxsize=4)
def _digits_tensors(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits as _sk_digits

    d = _sk_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0).unsqueeze(1)
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    x = x.clamp(0, 1).repeat(1, 3, 1, 1)
    return x, torch.from_numpy(d.target.astype(np.int64))


def load_digits(
    split: str = "train", size: int = 32, test_fraction: float = 0.3, seed: int = 0
) -> ImageSet:
    """scikit-learn's 8x8 handwritten digits, upsampled (bilinear) to `size` and made RGB.

    The train/test split is stratified and fixed by `seed`.
    """
    if split not in ("train", "test", "all"):
        raise EditriskError(f"digits split must be train, test or all, not '{split}'")
    x, y = _digits_tensors(size)
    classes = tuple(str(i) for i in range(10))
    if split == "all":
        return ImageSet(x.clone(), y.clone(), classes)
    g = torch.Generator().manual_seed(seed)
    test_idx = []
    for c in range(10):
        idx = (y == c).nonzero().squeeze(1)
        idx = idx[torch.randperm(len(idx), generator=g)]
        test_idx.append(idx[: round(len(idx) * test_fraction)])
    is_test = torch.zeros(len(y), dtype=torch.bool)
    is_test[torch.cat(test_idx)] = True
    keep = is_test if split == "test" else ~is_test
    return ImageSet(x[keep], y[keep], classes)


def load_cifar10(root: str | Path, split: str = "test") -> ImageSet:
    """CIFAR-10 from its binary format (`data_batch_{1..5}.bin`, `test_batch.bin`) under `root`."""
    root = Path(root)
    if (root / "cifar-10-batches-bin").is_dir():
        root = root / "cifar-10-batches-bin"
    names = ["test_batch.bin"] if split == "test" else [f"data_batch_{i}.bin" for i in range(1, 6)]
    images, labels = [], []
    for name in names:
        path = root / name
        if not path.is_file():
            raise InputError("CIFAR-10 binary batch not found", file=str(path))
        raw = np.fromfile(path, dtype=np.uint8)
        if raw.size % 3073:
            raise InputError(f"size {raw.size} is not a multiple of 3073 bytes", file=str(path))
        raw = raw.reshape(-1, 3073)
        labels.append(torch.from_numpy(raw[:, 0].astype(np.int64)))
        images.append(torch.from_numpy(raw[:, 1:].reshape(-1, 3, 32, 32).copy()))
    meta = root / "batches.meta.txt"
    classes = (
        tuple(line.strip() for line in meta.read_text().splitlines() if line.strip())
        if meta.is_file()
        else tuple(str(i) for i in range(10))
    )
    return ImageSet(torch.cat(images).float() / 255.0, torch.cat(labels), classes)


def read_image(path: str | Path, size: int | None = None, mode: str = "RGB") -> torch.Tensor:
    """One image file as a float tensor (C, H, W) in [0, 1], optionally resized to size x size."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert(mode)
            if size is not None:
                im = im.resize((size, size), Image.BILINEAR)
            arr = np.asarray(im, dtype=np.float32) / 255.0
    except OSError as err:
        raise InputError(f"unreadable image ({err})", file=str(path)) from err
    return torch.from_numpy(arr.reshape(arr.shape[0], arr.shape[1], -1)).permute(2, 0, 1).clone()


def load_image_folder(root: str | Path, size: int = 32) -> ImageSet:
    """An ImageFolder tree (`root/<class>/<image>`), classes sorted by name, resized to `size`."""
    root = Path(root)
    if not root.is_dir():
        raise InputError("image folder not found", file=str(root))
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not classes:
        raise InputError("no class sub-folders", file=str(root))
    images, labels = [], []
    for i, c in enumerate(classes):
        for f in sorted((root / c).iterdir()):
            if f.suffix.lower() in IMAGE_SUFFIXES:
                images.append(read_image(f, size))
                labels.append(i)
    if not images:
        raise InputError("no images found", file=str(root))
    return ImageSet(torch.stack(images), torch.tensor(labels), tuple(classes))
