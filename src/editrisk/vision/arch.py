"""Architecture table for image classifiers: the ordered editable conv/linear layers per family.

A family names its editable layers explicitly (built-in models) or lists every Conv2d/Linear in
definition order (`layers=None`, used for torchvision models). Adding a family is one entry.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from editrisk.errors import UnsupportedArchitectureError


@dataclass(frozen=True)
class VisionArch:
    """Where the editable layers of one classifier family live, ordered input -> output."""

    family: str
    layers: tuple[str, ...] | None = None
    description: str = ""

    def editable(self, model: nn.Module) -> list[str]:
        """Module paths of the editable conv/linear layers of `model`, early to late."""
        if self.layers is not None:
            return list(self.layers)
        return [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and n]


def _vgg_layers(n_blocks: int = 6) -> tuple[str, ...]:
    return (*(f"blocks.{i}.conv" for i in range(n_blocks)), "head")


def _resnet_layers(n_blocks: int = 4) -> tuple[str, ...]:
    inner = (f"blocks.{i}.conv{j}" for i in range(n_blocks) for j in (1, 2))
    return ("stem.conv", *inner, "head")


VISION_ARCHITECTURES: dict[str, VisionArch] = {
    a.family: a
    for a in (
        VisionArch("vgg", _vgg_layers(), "VGG-style CNN: 6 conv blocks (BN, ReLU, max-pool)"),
        VisionArch("resnet", _resnet_layers(), "small ResNet: stem + 4 basic blocks"),
        VisionArch("torchvision", None, "any torchvision/timm classifier: all conv/linear"),
    )
}


def vision_arch_for(family: str) -> VisionArch:
    """The table entry for `family` (a built-in family, or a standard model in torchvision's
    layout such as vgg16 or resnet50: `editrisk.vision.zoo`), or a clear error listing them."""
    from editrisk.vision.zoo import STANDARD_MODELS, standard_arch

    if family in STANDARD_MODELS:
        return standard_arch(family)
    try:
        return VISION_ARCHITECTURES[family]
    except KeyError:
        known = [*sorted(VISION_ARCHITECTURES), *STANDARD_MODELS]
        raise UnsupportedArchitectureError(
            f"no vision architecture entry for '{family}'; known: {known}"
        ) from None
