"""Built-in image classifiers trained in seconds on upsampled digits, seeded and cached.

`train_classifier` trains (or loads from the cache) one checkpoint; `testbed` returns several
checkpoints of differing accuracy (widths x epochs), which effective robustness needs. Weights
are cached as safetensors under `cache_dir()/vision`, keyed by everything that determines them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from editrisk.errors import EditriskError
from editrisk.models.loading import model_fingerprint
from editrisk.settings import cache_dir
from editrisk.vision.arch import VisionArch, vision_arch_for
from editrisk.vision.data import DIGITS_VERSION, ImageSet, load_digits

TRAINING_VERSION = "train-v2"  # bump when training below changes
MEAN, STD = 0.25, 0.35  # digits pixel statistics (approximately), applied inside the model


class ConvBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1, relu: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=True)
        self.bn = nn.BatchNorm2d(cout)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return F.relu(x) if self.relu else x


class Normalize(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - MEAN) / STD


class VGG(nn.Module):
    """Six 3x3 conv blocks (widths w, w, 2w, 2w, 4w, 4w), max-pool after every second."""

    def __init__(self, width: int = 16, n_classes: int = 10) -> None:
        super().__init__()
        widths = [width, width, 2 * width, 2 * width, 4 * width, 4 * width]
        cins = [3, *widths[:-1]]
        self.norm = Normalize()
        self.blocks = nn.ModuleList(ConvBlock(a, b) for a, b in zip(cins, widths))
        self.head = nn.Linear(widths[-1], n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i % 2 == 1:
                x = F.max_pool2d(x, 2)
        return self.head(x.mean((2, 3)))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = (
            nn.Identity()
            if stride == 1 and cin == cout
            else nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride), nn.BatchNorm2d(cout))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(h)) + self.shortcut(x))


class ResNet(nn.Module):
    """Stem conv and four basic blocks (widths w, 2w, 4w, 4w; strides 1, 2, 2, 1)."""

    def __init__(self, width: int = 16, n_classes: int = 10) -> None:
        super().__init__()
        self.norm = Normalize()
        self.stem = ConvBlock(3, width)
        plan = [
            (width, width, 1),
            (width, 2 * width, 2),
            (2 * width, 4 * width, 2),
            (4 * width, 4 * width, 1),
        ]
        self.blocks = nn.ModuleList(BasicBlock(a, b, s) for a, b, s in plan)
        self.head = nn.Linear(4 * width, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(self.norm(x))
        for block in self.blocks:
            x = block(x)
        return self.head(x.mean((2, 3)))


BUILDERS = {"vgg": VGG, "resnet": ResNet}


@dataclass
class Classifier:
    """A classifier, its architecture entry, class names and how it was made."""

    model: nn.Module
    arch: VisionArch
    name: str
    classes: tuple[str, ...]
    info: dict[str, Any] = field(default_factory=dict)
    _fingerprint: str | None = field(default=None, repr=False)

    def fingerprint(self) -> str:
        """sha256 of the weights (computed once; the base model's identity)."""
        if self._fingerprint is None:
            self._fingerprint = model_fingerprint(self.model)
        return self._fingerprint

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def layers(self) -> list[str]:
        return self.arch.editable(self.model)

    def layer(self, ref: int | str) -> str:
        """Module path of an editable layer given its index in the table or its path."""
        layers = self.layers
        if isinstance(ref, int) or (isinstance(ref, str) and ref.lstrip("-").isdigit()):
            i = int(ref)
            if not -len(layers) <= i < len(layers):
                raise EditriskError(f"{self.name} has {len(layers)} editable layers; got {i}")
            return layers[i]
        if ref not in layers:
            raise EditriskError(f"'{ref}' is not an editable layer of {self.name}: {layers}")
        return ref

    @torch.no_grad()
    def logits(self, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        """Logits in eval mode, batched; images (N, 3, H, W) in [0, 1] (float or uint8)."""
        self.model.eval()
        out = []
        for i in range(0, images.shape[0], batch_size):
            x = images[i : i + batch_size].to(self.device)
            x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
            out.append(self.model(x).float().cpu())
        return torch.cat(out) if out else torch.empty(0, len(self.classes))

    def predict(self, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        return self.logits(images, batch_size).argmax(1)


def build(family: str, width: int, n_classes: int = 10, seed: int = 0) -> nn.Module:
    """A freshly initialised built-in classifier (initialisation fixed by `seed`)."""
    if family not in BUILDERS:
        raise EditriskError(f"no built-in classifier '{family}'; choose one of {sorted(BUILDERS)}")
    torch.manual_seed(seed)
    return BUILDERS[family](width=width, n_classes=n_classes)


def _cache_path(family: str, width: int, epochs: int, seed: int, size: int) -> Path:
    key = f"{family}-w{width}-e{epochs}-s{seed}-{size}px-{DIGITS_VERSION}-{TRAINING_VERSION}"
    return cache_dir() / "vision" / "classifiers" / f"{key}.safetensors"


def _shift(x: torch.Tensor, g: torch.Generator, max_shift: int = 2) -> torch.Tensor:
    """Random translation by up to `max_shift` pixels (the same shift for the whole batch)."""
    dx, dy = torch.randint(-max_shift, max_shift + 1, (2,), generator=g).tolist()
    return torch.roll(x, shifts=(dy, dx), dims=(2, 3))


def train_classifier(
    family: str = "vgg",
    width: int = 16,
    epochs: int | Iterable[int] = 8,
    seed: int = 0,
    size: int = 32,
    *,
    lr: float = 3e-3,
    batch_size: int = 64,
    use_cache: bool = True,
) -> Classifier | list[Classifier]:
    """Train a built-in classifier on the digits train split (deterministic given the seed).

    With a list of epochs, one run saves a checkpoint at each and a list is returned (a constant
    learning rate makes the epoch-e snapshot equal to a run of e epochs).
    """
    many = not isinstance(epochs, int)
    wanted = sorted(set(epochs)) if many else [epochs]  # type: ignore[arg-type]
    if not wanted or wanted[0] < 0:
        raise EditriskError(f"epochs must be non-negative; got {wanted}")
    paths = {e: _cache_path(family, width, e, seed, size) for e in wanted}
    out: dict[int, Classifier] = {}
    if use_cache and all(p.is_file() for p in paths.values()):
        out = {e: load_classifier(p) for e, p in paths.items()}
    else:
        data = load_digits("train", size=size)
        model = build(family, width, len(data.classes), seed)
        g = torch.Generator().manual_seed(seed)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        info = {
            "family": family,
            "width": width,
            "seed": seed,
            "size": size,
            "data": DIGITS_VERSION,
            "training": TRAINING_VERSION,
        }
        for epoch in range(wanted[-1] + 1):
            if epoch in paths:
                clf = _snapshot(model, family, data, {**info, "epochs": epoch})
                out[epoch] = clf
                if use_cache:
                    _save(clf, paths[epoch])
            if epoch == wanted[-1]:
                break
            model.train()
            order = torch.randperm(len(data), generator=g)
            for i in range(0, len(order), batch_size):
                idx = order[i : i + batch_size]
                loss = F.cross_entropy(model(_shift(data.images[idx], g)), data.labels[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
    result = [out[e] for e in wanted]
    return result if many else result[0]


def _snapshot(model: nn.Module, family: str, data: ImageSet, info: dict[str, Any]) -> Classifier:
    clone = build(family, info["width"], len(data.classes), info["seed"])
    clone.load_state_dict(model.state_dict())
    clone.eval()
    name = f"{family}-w{info['width']}-e{info['epochs']}-s{info['seed']}"
    return Classifier(clone, vision_arch_for(family), name, data.classes, dict(info))


def _save(clf: Classifier, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tensors = {k: v.detach().cpu().contiguous() for k, v in clf.model.state_dict().items()}
    meta = {
        "format": "editrisk.vision-classifier/1",
        "name": clf.name,
        "classes": json.dumps(list(clf.classes)),
        "info": json.dumps(clf.info),
    }
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(path)


def load_classifier(path: str | Path, device: str | torch.device = "cpu") -> Classifier:
    """Load a built-in classifier saved by `train_classifier` (safetensors only)."""
    path = Path(path)
    if not path.is_file():
        raise EditriskError(f"classifier file not found: {path}")
    with safe_open(str(path), framework="pt", device="cpu") as f:
        meta = f.metadata() or {}
        if meta.get("format") != "editrisk.vision-classifier/1":
            raise EditriskError(f"{path}: not an editrisk classifier")
        state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    info = json.loads(meta["info"])
    classes = tuple(json.loads(meta["classes"]))
    model = build(info["family"], info["width"], len(classes), info["seed"])
    model.load_state_dict(state)
    model.to(device).eval()
    return Classifier(model, vision_arch_for(info["family"]), meta["name"], classes, info)


def train_testbed(
    family: str = "vgg",
    widths: Iterable[int] = (4, 8, 16),
    epochs: Iterable[int] = (1, 3, 8),
    seed: int = 0,
    size: int = 32,
) -> list[Classifier]:
    """Checkpoints of differing accuracy (every width x epoch), for effective robustness."""
    out: list[Classifier] = []
    for w in widths:
        out.extend(train_classifier(family, w, list(epochs), seed, size))  # type: ignore[arg-type]
    return out


def from_torchvision(
    name: str, weights: str | Path | None = None, classes: tuple[str, ...] | None = None
) -> Classifier:
    """A torchvision classifier by name, with weights from a local safetensors file if given.

    Needs the optional `torchvision` extra. Inputs must be [0, 1] images; the model's own
    normalisation is the caller's concern (wrap the model if needed).
    """
    try:
        import torchvision
    except Exception as err:  # torchvision fails to import beside some torch builds
        raise EditriskError(f"torchvision adapter needs 'editrisk[vision]' ({err})") from err
    try:
        model = torchvision.models.get_model(name, weights=None)
    except ValueError as err:
        raise EditriskError(f"unknown torchvision model '{name}'") from err
    if weights is not None:
        from safetensors.torch import load_file

        model.load_state_dict(load_file(str(weights)))
    model.eval()
    n_out = next(
        m for m in reversed(list(model.modules())) if isinstance(m, nn.Linear)
    ).out_features
    return Classifier(
        model,
        vision_arch_for("torchvision"),
        name,
        classes or tuple(map(str, range(n_out))),
        {"family": "torchvision", "name": name, "weights": str(weights) if weights else None},
    )
