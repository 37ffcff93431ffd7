"""Keys and values of a conv/linear layer, read through the one hook utility (`Trace`), and
their second moment through the one statistics machinery (`editing.covariance`).

For a conv layer the key at an output location is the unfolded input patch (in*kh*kw) and the
value is the layer's output there, so `value = W.view(out, -1) @ key + bias`; a linear layer has
one location per image.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from editrisk.editing.covariance import SecondMoment, load_moment, save_moment
from editrisk.errors import EditriskError
from editrisk.hooks import Trace, get_module
from editrisk.settings import cache_dir


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


def _batches(
    model: nn.Module, layer: str, images: torch.Tensor, batch_size: int = 256
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Keys (n, L, d) and layer outputs of `images`, a batch at a time (forward stopped
    after the layer)."""
    module = get_module(model, layer)
    check_layer(module, layer)
    model.eval()
    device = next(model.parameters()).device
    for i in range(0, images.shape[0], batch_size):
        x = images[i : i + batch_size].to(device).float()
        with Trace(model, layer, retain_input=True, retain_output=True, stop_after=layer) as tr:
            model(x)
        yield unfold_keys(module, tr[layer].input), tr[layer].output


@torch.no_grad()
def keys_and_values(
    model: nn.Module, layer: str, images: torch.Tensor, batch_size: int = 256
) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
    """Keys (N, L, d), values (N, L, out) and the output grid (h, w) of `layer` on `images`."""
    ks, vs = [], []
    hw = (1, 1)
    for keys, out in _batches(model, layer, images, batch_size):
        ks.append(keys)
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
def key_second_moment(
    model: nn.Module, layer: str, images: torch.Tensor, fingerprint: str | None = None
) -> torch.Tensor:
    """C = E[k k^T] over every location of `images` (float64, (d, d)), accumulated batch by
    batch with the language editors' `SecondMoment`. With the model's `fingerprint` it is
    cached under stats/<fingerprint>/, keyed by the layer and a hash of the images."""
    path = None
    if fingerprint is not None:
        digest = hashlib.sha256(images.detach().cpu().contiguous().numpy().tobytes())
        name = f"vision-{layer}-{tuple(images.shape)}-{digest.hexdigest()[:16]}.safetensors"
        path = cache_dir() / "stats" / fingerprint / name.replace(" ", "")
        if path.exists():
            return load_moment(path)[0]
    stat: SecondMoment | None = None
    for keys, _ in _batches(model, layer, images):
        k = keys.reshape(-1, keys.shape[-1])
        stat = stat or SecondMoment(k.shape[-1])
        stat.add(k)
    if stat is None:
        raise EditriskError(f"no images to collect key statistics of layer '{layer}' from")
    moment = stat.moment()
    if path is not None:
        meta = {"layer": layer, "images": str(images.shape[0]), "model_fingerprint": fingerprint}
        save_moment(path, moment, meta)
    return moment
