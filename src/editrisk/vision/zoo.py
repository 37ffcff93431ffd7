"""The standard ImageNet classifiers of the editing literature (VGG-11/13/16/19 with and
without batch norm, ResNet-18/34/50/101/152) in torchvision's parameter layout, without
torchvision (it cannot import beside some torch builds).

The state_dict of `build("vgg16")` has the keys and shapes of torchvision's `vgg16()` (the same
for every name here), so a user's local torchvision weights load unchanged: `load_standard(
"vgg16", "vgg16.safetensors")`. Two differences from torchvision's modules, neither visible in
the state_dict: the models take images in [0, 1] and normalise them inside (ImageNet mean and
std as non-persistent buffers, like every editrisk classifier), and ReLUs are not in place (so
a hook that keeps a layer's output keeps what the layer computed).

Weights load from safetensors, or from a torch file through `torch.load(weights_only=True)`
(never an unpickler that runs code); a missing, extra or misshapen key is refused naming the
file and the key.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from editrisk.errors import EditriskError, InputError
from editrisk.vision.arch import VisionArch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# conv widths per VGG configuration, "M" a 2x2 max-pool (Simonyan & Zisserman 2015, table 1)
VGG_CONFIGS: dict[str, tuple[int | str, ...]] = {
    "vgg11": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg13": (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg16": (64, 64, "M", 128, 128, "M", *(256,) * 3, "M", *(512,) * 3, "M", *(512,) * 3, "M"),
    "vgg19": (64, 64, "M", 128, 128, "M", *(256,) * 4, "M", *(512,) * 4, "M", *(512,) * 4, "M"),
}
# (block kind, blocks per stage) per ResNet depth (He et al. 2016, table 1)
RESNET_CONFIGS: dict[str, tuple[str, tuple[int, int, int, int]]] = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
    "resnet152": ("bottleneck", (3, 8, 36, 3)),
}
STANDARD_MODELS: tuple[str, ...] = (
    *(n for v in VGG_CONFIGS for n in (v, f"{v}_bn")),
    *RESNET_CONFIGS,
)


class _Normalize(nn.Module):
    """(x - mean) / std with non-persistent buffers: nothing in the state_dict."""

    def __init__(self, mean: Sequence[float] | None, std: Sequence[float] | None) -> None:
        super().__init__()
        self.enabled = mean is not None
        self.register_buffer("mean", torch.tensor(mean or (0.0,)).view(1, -1, 1, 1), False)
        self.register_buffer("std", torch.tensor(std or (1.0,)).view(1, -1, 1, 1), False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std if self.enabled else x


class VGG(nn.Module):
    """VGG: `features` (3x3 convs [+ batch norm] + ReLU, max-pools), 7x7 adaptive average
    pool, `classifier` (Linear 25088-4096, ReLU, Dropout, Linear 4096-4096, ReLU, Dropout,
    Linear 4096-n_classes)."""

    def __init__(
        self,
        config: Sequence[int | str],
        batch_norm: bool = False,
        n_classes: int = 1000,
        mean: Sequence[float] | None = IMAGENET_MEAN,
        std: Sequence[float] | None = IMAGENET_STD,
    ) -> None:
        super().__init__()
        self.normalize = _Normalize(mean, std)
        layers: list[nn.Module] = []
        cin = 3
        for v in config:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
                continue
            layers.append(nn.Conv2d(cin, int(v), 3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(int(v)))
            layers.append(nn.ReLU())
            cin = int(v)
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(cin * 7 * 7, 4096),
            nn.ReLU(),
            nn.Dropout(),
            nn.Linear(4096, 4096),
            nn.ReLU(),
            nn.Dropout(),
            nn.Linear(4096, n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(self.normalize(x)))
        return self.classifier(torch.flatten(x, 1))


def _conv(cin: int, cout: int, k: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs with batch norm; the first carries the stride."""

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int, downsample: nn.Module | None) -> None:
        super().__init__()
        self.conv1 = _conv(cin, planes, 3, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv(planes, planes, 3)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        skip = x if self.downsample is None else self.downsample(x)
        return self.relu(h + skip)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carrying the stride, as torchvision's "ResNet v1.5"), 1x1 expand x4."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int, downsample: nn.Module | None) -> None:
        super().__init__()
        self.conv1 = _conv(cin, planes, 1)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv(planes, planes, 3, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv(planes, planes * 4, 1)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu(self.bn1(self.conv1(x)))
        h = self.relu(self.bn2(self.conv2(h)))
        h = self.bn3(self.conv3(h))
        skip = x if self.downsample is None else self.downsample(x)
        return self.relu(h + skip)


class ResNet(nn.Module):
    """ResNet: 7x7/2 stem conv, batch norm, ReLU, 3x3/2 max-pool, four stages `layer1-4`
    (64, 128, 256, 512 planes; strides 1, 2, 2, 2), global average pool, `fc`."""

    def __init__(
        self,
        block: str,
        depths: Sequence[int],
        n_classes: int = 1000,
        mean: Sequence[float] | None = IMAGENET_MEAN,
        std: Sequence[float] | None = IMAGENET_STD,
    ) -> None:
        super().__init__()
        cls = BasicBlock if block == "basic" else Bottleneck
        self.normalize = _Normalize(mean, std)
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        cin = 64
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), depths)):
            blocks = []
            for j in range(n):
                stride = 2 if i > 0 and j == 0 else 1
                down = None
                if j == 0 and (stride != 1 or cin != planes * cls.expansion):
                    down = nn.Sequential(
                        _conv(cin, planes * cls.expansion, 1, stride),
                        nn.BatchNorm2d(planes * cls.expansion),
                    )
                blocks.append(cls(cin, planes, stride, down))
                cin = planes * cls.expansion
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(cin, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(self.normalize(x)))))
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _check_name(name: str) -> None:
    if name not in STANDARD_MODELS:
        raise EditriskError(f"no standard model '{name}'; choose from {list(STANDARD_MODELS)}")


def build(
    name: str,
    n_classes: int = 1000,
    seed: int = 0,
    mean: Sequence[float] | None = IMAGENET_MEAN,
    std: Sequence[float] | None = IMAGENET_STD,
) -> nn.Module:
    """A freshly initialised standard model `name` (initialisation fixed by `seed`), in eval
    mode. `mean`/`std` None: the model takes its inputs as they come."""
    _check_name(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if name.startswith("vgg"):
            base = name.removesuffix("_bn")
            model: nn.Module = VGG(VGG_CONFIGS[base], name.endswith("_bn"), n_classes, mean, std)
        else:
            block, depths = RESNET_CONFIGS[name]
            model = ResNet(block, depths, n_classes, mean, std)
    return model.eval()


def editable_layers(name: str) -> tuple[str, ...]:
    """The conv/linear layers an editor may rewrite, input to output: every conv and linear
    layer of a VGG; the stem, each block's main-path convs and `fc` of a ResNet (the 1x1
    downsample convs of the skip path are left out)."""
    _check_name(name)
    if name.startswith("vgg"):
        out, i = [], 0
        for v in VGG_CONFIGS[name.removesuffix("_bn")]:
            if v == "M":
                i += 1
                continue
            out.append(f"features.{i}")
            i += 3 if name.endswith("_bn") else 2
        return (*out, "classifier.0", "classifier.3", "classifier.6")
    block, depths = RESNET_CONFIGS[name]
    convs = ("conv1", "conv2") if block == "basic" else ("conv1", "conv2", "conv3")
    inner = (f"layer{i + 1}.{j}.{c}" for i, n in enumerate(depths) for j in range(n) for c in convs)
    return ("conv1", *inner, "fc")


def standard_arch(name: str) -> VisionArch:
    """The architecture-table entry of standard model `name`."""
    kind = "VGG" if name.startswith("vgg") else "ResNet"
    return VisionArch(name, editable_layers(name), f"{kind} in torchvision's parameter layout")


def layout(name: str, n_classes: int = 1000) -> dict[str, tuple[int, ...]]:
    """state_dict key -> shape of standard model `name` (torchvision's layout), built on the
    meta device (no memory, no initialisation)."""
    with torch.device("meta"):
        model = build(name, n_classes)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def n_parameters(name: str) -> int:
    """Parameters of standard model `name` (batch-norm statistics left out, as torchvision
    counts them)."""
    skip = ("running_mean", "running_var", "num_batches_tracked")
    return sum(math.prod(s) for k, s in layout(name).items() if not k.endswith(skip))


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a weights file: safetensors, or a torch file read with
    `torch.load(weights_only=True)` (a plain state_dict, or one under "state_dict" or "model";
    a DataParallel "module." prefix is dropped)."""
    path = Path(path)
    if not path.is_file():
        raise InputError("weights file not found", file=str(path))
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state: Any = load_file(str(path))
        except (SafetensorError, OSError) as err:
            raise InputError(f"not a readable safetensors file ({err})", file=str(path)) from err
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # pickle, zip and weights_only refusals all land here
            reason = " ".join(str(err).split())[:300]
            raise InputError(
                f"not a torch weights file loadable with weights_only=True ({reason}); "
                "save a state_dict of tensors, or convert it to safetensors",
                file=str(path),
            ) from err
        if isinstance(state, dict):
            for key in ("state_dict", "model"):
                if isinstance(state.get(key), dict):
                    state = state[key]
                    break
    if not isinstance(state, dict) or not state:
        raise InputError("holds no state_dict (a mapping of names to tensors)", file=str(path))
    bad = [k for k, v in state.items() if not isinstance(k, str) or not torch.is_tensor(v)]
    if bad:
        raise InputError(f"key {bad[0]!r} is not a named tensor", file=str(path))
    if all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return state


def check_layout(
    state: dict[str, torch.Tensor], want: dict[str, tuple[int, ...]], name: str, file: str
) -> None:
    """Refuse `state` unless it has exactly the keys and shapes of `want` (a missing batch-norm
    `num_batches_tracked`, absent from old checkpoints, is allowed)."""
    missing = [k for k in want if k not in state and not k.endswith("num_batches_tracked")]
    extra = [k for k in state if k not in want]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise InputError(f"missing key '{missing[0]}'{more} of {name}", file=file)
    if extra:
        more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
        raise InputError(f"unexpected key '{extra[0]}'{more}: not a {name} weight", file=file)
    for k, v in state.items():
        if tuple(v.shape) != want[k]:
            raise InputError(
                f"key '{k}' has shape {tuple(v.shape)}; {name} needs {want[k]}", file=file
            )


def n_classes_of(name: str, state: dict[str, torch.Tensor]) -> int:
    """Classes a state_dict of standard model `name` predicts (rows of its last layer)."""
    last = "classifier.6.weight" if name.startswith("vgg") else "fc.weight"
    return int(state[last].shape[0]) if last in state else 1000


def load_standard(
    name: str,
    weights: str | Path | None = None,
    classes: Sequence[str] | None = None,
    *,
    seed: int = 0,
    mean: Sequence[float] | None = IMAGENET_MEAN,
    std: Sequence[float] | None = IMAGENET_STD,
    device: str | torch.device = "cpu",
) -> Any:
    """A `Classifier` of standard model `name`: weights from a local file (seeded random
    weights without one); class names `classes` (default "0", "1", ...), as many as the
    weights' last layer has rows."""
    from editrisk.vision.classifiers import Classifier

    _check_name(name)
    state = read_state_dict(weights) if weights is not None else None
    n = n_classes_of(name, state) if state is not None else len(classes or ()) or 1000
    if classes is not None and len(classes) != n:
        where = f" of {weights}" if weights is not None else ""
        raise EditriskError(f"{len(classes)} class names for the {n} outputs{where}")
    if state is None:
        model = build(name, n, seed, mean, std)
    else:
        want = layout(name, n)
        check_layout(state, want, name, str(weights))
        with torch.device("meta"):  # no initialisation the weights would overwrite
            model = build(name, n, seed, mean, std)
        model = model.to_empty(device="cpu")
        model.normalize = _Normalize(mean, std)  # its buffers are not in the state_dict
        full = {k: torch.zeros((), dtype=torch.long) for k in want if k not in state}
        model.load_state_dict({**full, **state})  # copies (and casts) into fresh tensors
    model.to(device).eval()
    info = {"family": name, "weights": str(weights) if weights else None, "seed": seed}
    label = f"{name}:{Path(weights).name}" if weights else f"{name}-random-s{seed}"
    names = tuple(classes) if classes is not None else tuple(str(i) for i in range(n))
    return Classifier(model, standard_arch(name), label, names, info)
