"""Keys and values of a conv/linear layer, read through the one hook utility (`Trace`).

For a conv layer the key at an output location is the unfolded input patch (in*kh*kw) and the
value is the layer's output there, so `value = W.view(out, -1) @ key + bias`; a linear layer has
one location per image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from editrisk.errors import EditriskError
from editrisk.hooks import Trace, get_module


def weight_matrix(module: nn.Module) -> torch.Tensor:
    """The layer's weight as a (out, key_dim) matrix (a view for conv layers)."""
    return module.weight.reshape(module.weight.shape[0], -1)


def check_layer(module: nn.Module, name: str) -> None:
    if isinstance(module, nn.Conv2d):
        if module.groups != 1:
            raise EditriskError(f"layer '{name}' is a grouped conv; only groups=1 is editable")
        if module.padding_mode != "zeros":
            raise EditriskError(f"layer '{name}' pads with '{module.padding_mode}'; need zeros")
    elif not isinstance(module, nn.Linear):
        raise EditriskError(f"layer '{name}' is {type(module).__name__}, not Conv2d or Linear")


def unfold_keys(module: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """Keys (N, L, key_dim) from a layer input: unfolded patches, or the vectors themselves."""
    if isinstance(module, nn.Linear):
        return inputs.reshape(inputs.shape[0], 1, -1)
    cols = F.unfold(inputs, module.kernel_size, module.dilation, module.padding, module.stride)
    return cols.transpose(1, 2)


@torch.no_grad()
def keys_and_values(
    model: nn.Module, layer: str, images: torch.Tensor, batch_size: int = 256
) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
    """Keys (N, L, d), values (N, L, out) and the output grid (h, w) of `layer` on `images`."""
    module = get_module(model, layer)
    check_layer(module, layer)
    model.eval()
    ks, vs = [], []
    hw = (1, 1)
    device = next(model.parameters()).device
    for i in range(0, images.shape[0], batch_size):
        x = images[i : i + batch_size].to(device).float()
        with Trace(model, layer, retain_input=True, retain_output=True, stop_after=layer) as tr:
            model(x)
        inp, out = tr[layer].input, tr[layer].output
        ks.append(unfold_keys(module, inp))
        if out.ndim == 4:
            hw = (out.shape[2], out.shape[3])
            out = out.flatten(2).transpose(1, 2)
        else:
            out = out.unsqueeze(1)
        vs.append(out)
    return torch.cat(ks), torch.cat(vs), hw


def masks_at(masks: torch.Tensor, hw: tuple[int, int], threshold: float = 0.5) -> torch.Tensor:
    """Boolean (N, L) masks resampled (area) to a layer's output grid."""
    if hw == (1, 1):
        return torch.ones(masks.shape[0], 1, dtype=torch.bool)
    small = F.interpolate(masks.float(), size=hw, mode="area")
    return (small > threshold).flatten(1)


@torch.no_grad()
def key_second_moment(model: nn.Module, layer: str, images: torch.Tensor) -> torch.Tensor:
    """C = E[k k^T] over every location of `images` (float64, (d, d))."""
    keys, _, _ = keys_and_values(model, layer, images)
    k = keys.reshape(-1, keys.shape[-1]).double()
    return k.T @ k / k.shape[0]
