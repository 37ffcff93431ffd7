"""ImageNet-C style corruptions, batched in torch (CPU or GPU), deterministic per seed.

Every corruption takes images (N, C, H, W) float in [0, 1] and a severity 1..5 and returns a
tensor of the same shape in [0, 1]. Random draws come from a generator seeded by (seed,
corruption), and the same draws are reused at every severity, so distance from the clean image
grows with severity. Spatial parameters are given for 32-pixel images and scale with size.
Families follow Hendrycks & Dietterich (2019); fog and frost are procedural (no photographs).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Iterable, Iterator

import torch
import torch.nn.functional as F

from editrisk.errors import EditriskError

Corruption = Callable[[torch.Tensor, int, torch.Generator], torch.Tensor]
SEVERITIES = (1, 2, 3, 4, 5)

# -- helpers ---------------------------------------------------------------------------------


def _generator(x: torch.Tensor, seed: int, name: str) -> torch.Generator:
    return torch.Generator(device=x.device).manual_seed(
        seed * 1_000_003 + zlib.crc32(name.encode())
    )


def _scale(x: torch.Tensor) -> float:
    return x.shape[-1] / 32.0


def _depthwise(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Convolve every channel of x with `kernel` (k, k) or per-image kernels (N, k, k)."""
    n, c, h, w = x.shape
    k = kernel.shape[-1]
    pad = k // 2
    xp = F.pad(x, (pad, pad, pad, pad), mode="reflect" if pad < min(h, w) else "replicate")
    if kernel.ndim == 2:
        weight = kernel.expand(c, 1, k, k)
        return F.conv2d(xp, weight.to(x.dtype), groups=c)
    weight = kernel.repeat_interleave(c, 0).unsqueeze(1).to(x.dtype)  # (N*C, 1, k, k)
    out = F.conv2d(xp.reshape(1, n * c, h + 2 * pad, w + 2 * pad), weight, groups=n * c)
    return out.reshape(n, c, h, w)


def gaussian_kernel(sigma: float, device: torch.device | None = None) -> torch.Tensor:
    """Normalised 2-D gaussian kernel with radius ceil(3 sigma)."""
    r = max(1, math.ceil(3 * sigma))
    t = torch.arange(-r, r + 1, dtype=torch.float32, device=device)
    g = torch.exp(-(t**2) / (2 * sigma**2))
    k = g[:, None] * g[None, :]
    return k / k.sum()


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable gaussian blur (reflect padding): two 1-D depthwise passes."""
    r = max(1, math.ceil(3 * sigma))
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    g = torch.exp(-(t**2) / (2 * sigma**2))
    g = g / g.sum()
    c = x.shape[1]
    mode = "reflect" if r < min(x.shape[-2:]) else "replicate"
    x = F.conv2d(
        F.pad(x, (r, r, 0, 0), mode=mode), g.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c
    )
    return F.conv2d(
        F.pad(x, (0, 0, r, r), mode=mode), g.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c
    )


def _rand(g: torch.Generator, *shape: int, device: torch.device) -> torch.Tensor:
    return torch.rand(shape, generator=g, device=device)


def _randn(g: torch.Generator, *shape: int, device: torch.device) -> torch.Tensor:
    return torch.randn(shape, generator=g, device=device)


# -- noise -----------------------------------------------------------------------------------


def gaussian_noise(x: torch.Tensor, s: int, g: torch.Generator) -> torch.Tensor:
    sigma = (0.06, 0.10, 0.14, 0.18, 0.24)[s - 1]
    return x + sigma * _randn(g, *x.shape, device=x.device)


def shot_noise(x: torch.Tensor, s: int, g: torch.Generator) -> torch.Tensor:
    lam = (60.0, 25.0, 12.0, 5.0, 3.0)[s - 1]
    return torch.poisson(x.clamp(0, 1) * lam, generator=g) / lam


def impulse_noise(x: torch.Tensor, s: int, g: torch.Generator) -> torch.Tensor:
    amount = (0.03, 0.06, 0.09, 0.17, 0.27)[s - 1]
    hit = _rand(g, *x.shape, device=x.device) < amount
    salt = (_rand(g, *x.shape, device=x.device) < 0.5).to(x.dtype)
    return torch.where(hit, salt, x)


# -- blur ------------------------------------------------------------------------------------


def gaussian_blur(x: torch.Tensor, s: int, g: torch.Generator) -> torch.Tensor:
    return _blur(x, (0.4, 0.6, 0.8, 1.0, 1.5)[s - 1] * _scale(x))


def disk_kernel(radius: float, device: torch.device | None = None) -> torch.Tensor:
    """Anti-aliased disk (defocus) kernel of the given radius, normalised."""
    r = math.ceil(radius + 0.5)
    t = torch.arange(-r, r + 1, dtype=torch.float32, device=device)
    dist = torch.sqrt(t[:, None] ** 2 + t[None, :] ** 2)
    k = (radius + 0.5 - dist).clamp(0, 1)
    return k / k.sum()


def defocus_blur(x: torch.Tensor, s: int, g: torch.Generator) -> torch.Tensor:
    return _depthwise(x, disk_kernel((0.75, 1.0, 1.5, 2.0, 2.5)[s - 1] * _scale(x), x.device))


def motion_kernels(length: float, angles: torch.Tensor) -> torch.Tensor:
    """One-sided line kernels (N, k, k) of `length` pixels at `angles` (radians)."""
    r = math.ceil(length)
    t = torch.arange(-r, r + 1, dtype=torch.float32, device=angles.device)
    py, px = t[:, None], t[None, :]
    dx, dy = torch.cos(angles)[:, None, None], torch.sin(angles)[:, None, None]
    along = (px * dx + py * dy).clamp(0, length)  # projection onto the segment [0, length]
    dist = torch.sqrt((px - along * dx) ** 2 + (py - along * dy) ** 2)
    k = (1 - dist).clamp(min=0)
    return k / k.sum((1, 2), keepdim=True)


def motion_blur(x: torch.Tensor, s: int, g: torch.Generator) -> torch.Tensor:
    angles = (_rand(g, x.shape[0], device=x.device) * 2 - 1) * math.pi
    return _depthwise(x, motion_kernels((1.5, 2.5, 3.5, 4.5, 6.0)[s - 1] * _scale(x), angles))


# -- weather and digital ---------------------------------------------------------------------


def brightness(x: torch.Tensor, s: int, g: torch.Generator) -> torch.Tensor:
    """Raise the HSV value channel by c, keeping hue and saturation."""
    c = (0.1, 0.2, 0.3, 0.4, 0.5)[s - 1]
    v = x.amax(1, keepdim=True)
    v_new = (v + c).clamp(max=1)
    ratio = torch.where(v > 0, v_new / v.clamp(min=1e-8), torch.zeros_like(v))
    return torch.where(v > 0, x * ratio, v_new.expand_as(x))


def contrast(x: torch.Tensor, s: int, g: torch.Generator) -> torch.Tensor:
    c = (0.75, 0.5, 0.4, 0.3, 0.15)[s - 1]
    mean = x.mean((1, 2, 3), keepdim=True)
    return (x - mean) * c + mean


def plasma(
    n: int, h: int, w: int, g: torch.Generator, device: torch.device, decay: float = 2.0
) -> torch.Tensor:
    """Fractal noise (N, 1, H, W) in [0, 1]: random octaves summed coarse to fine, each level
    upsampled 2x (bilinear) before the next finer octave is added."""
    out = _rand(g, n, 1, 2, 2, device=device)
    amp, size = 1.0 / decay, 4
    while size <= max(h, w):
        out = F.interpolate(out, size=(size, size), mode="bilinear", align_corners=False)
        out = out + amp * _rand(g, n, 1, size, size, device=device)
        amp /= decay
        size *= 2
    out = F.interpolate(out, size=(h, w), mode="bilinear", align_corners=False)
    lo = out.amin((2, 3), keepdim=True)
    hi = out.amax((2, 3), keepdim=True)
    return (out - lo) / (hi - lo).clamp(min=1e-8)


def fog(x: torch.Tensor, s: int, g: torch.Generator) -> torch.Tensor:
    c = (0.2, 0.5, 0.75, 1.0, 1.5)[s - 1]
    peak = x.amax((1, 2, 3), keepdim=True)
    fogged = x + c * plasma(x.shape[0], x.shape[2], x.shape[3], g, x.device)
    return fogged * peak / (peak + c)


def frost_texture(n: int, h: int, w: int, g: torch.Generator, device: torch.device) -> torch.Tensor:
    """Procedural ice (N, 3, H, W) in [0, 1]: sparse crystals streaked in random directions."""
    seeds = (_rand(g, n, 1, h, w, device=device) > 0.9).float()
    angles = (_rand(g, n, device=device) * 2 - 1) * math.pi
    streaks = _depthwise(seeds, motion_kernels(3.0 * h / 32, angles)) * 4
    haze = plasma(n, h, w, g, device, decay=1.5)
    ice = (0.6 * streaks + 0.5 * haze).clamp(0, 1)
    tint = torch.tensor([0.85, 0.92, 1.0], device=device).view(1, 3, 1, 1)
    return ice * tint


def frost(x: torch.Tensor, s: int, g: torch.Generator) -> torch.Tensor:
    a, b = ((1.0, 0.25), (0.95, 0.4), (0.9, 0.5), (0.85, 0.6), (0.75, 0.7))[s - 1]
    ice = frost_texture(x.shape[0], x.shape[2], x.shape[3], g, x.device)
    return a * x + b * ice[:, : x.shape[1]]


def elastic_transform(x: torch.Tensor, s: int, g: torch.Generator) -> torch.Tensor:
    """Warp by a smooth random displacement field of amplitude alpha pixels."""
    n, _, h, w = x.shape
    alpha = (0.75, 1.25, 1.75, 2.25, 3.0)[s - 1] * _scale(x)
    field = _blur(_rand(g, n, 2, h, w, device=x.device) * 2 - 1, 3.0 * _scale(x))
    field = field / field.abs().amax((1, 2, 3), keepdim=True).clamp(min=1e-8) * alpha
    ys, xs = torch.meshgrid(
        torch.arange(h, device=x.device, dtype=x.dtype),
        torch.arange(w, device=x.device, dtype=x.dtype),
        indexing="ij",
    )
    gx = (xs + field[:, 0]) / (w - 1) * 2 - 1
    gy = (ys + field[:, 1]) / (h - 1) * 2 - 1
    grid = torch.stack([gx, gy], -1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=True)


def pixelate(x: torch.Tensor, s: int, g: torch.Generator) -> torch.Tensor:
    f = (0.85, 0.75, 0.6, 0.5, 0.4)[s - 1]
    h, w = x.shape[-2:]
    small = F.interpolate(x, size=(max(1, round(h * f)), max(1, round(w * f))), mode="area")
    return F.interpolate(small, size=(h, w), mode="nearest-exact")


_LUMA_Q = torch.tensor(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ],
    dtype=torch.float32,
)
_CHROMA_Q = torch.full((8, 8), 99.0)
_CHROMA_Q[:4, :4] = torch.tensor(
    [[17, 18, 24, 47], [18, 21, 26, 66], [24, 26, 56, 99], [47, 66, 99, 99]], dtype=torch.float32
)


def _dct_matrix(device: torch.device) -> torch.Tensor:
    k = torch.arange(8, dtype=torch.float32, device=device)
    m = torch.cos((2 * k[None, :] + 1) * k[:, None] * math.pi / 16) * math.sqrt(2 / 8)
    m[0] /= math.sqrt(2)
    return m


def _quality_table(table: torch.Tensor, quality: int) -> torch.Tensor:
    scale = 5000 / quality if quality < 50 else 200 - 2 * quality
    return ((table * scale + 50) // 100).clamp(1, 255)


def _jpeg_plane(p: torch.Tensor, q: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """Quantise one plane (N, H, W) in [0, 255] (H, W multiples of 8) through 8x8 DCT."""
    n, h, w = p.shape
    blocks = (p - 128).reshape(n, h // 8, 8, w // 8, 8).transpose(2, 3)
    coef = d @ blocks @ d.T
    coef = torch.round(coef / q) * q
    back = (d.T @ coef @ d).transpose(2, 3).reshape(n, h, w)
    return back + 128


def jpeg_compression(x: torch.Tensor, s: int, g: torch.Generator) -> torch.Tensor:
    """Baseline JPEG (YCbCr, 4:2:0 chroma, standard tables at IJG quality) without entropy code."""
    quality = (80, 65, 58, 50, 40)[s - 1]
    n, c, h, w = x.shape
    rgb = x.clamp(0, 1).expand(n, 3, h, w) * 255 if c == 1 else x.clamp(0, 1) * 255
    ph, pw = -h % 16, -w % 16
    rgb = F.pad(rgb, (0, pw, 0, ph), mode="replicate")
    r, gch, b = rgb.unbind(1)
    y = 0.299 * r + 0.587 * gch + 0.114 * b
    cb = 128 - 0.168736 * r - 0.331264 * gch + 0.5 * b
    cr = 128 + 0.5 * r - 0.418688 * gch - 0.081312 * b
    d = _dct_matrix(x.device)
    y = _jpeg_plane(y, _quality_table(_LUMA_Q, quality).to(x.device), d)
    qc = _quality_table(_CHROMA_Q, quality).to(x.device)
    chroma = []
    for plane in (cb, cr):
        small = F.avg_pool2d(plane.unsqueeze(1), 2).squeeze(1)
        small = _jpeg_plane(small, qc, d)
        chroma.append(F.interpolate(small.unsqueeze(1), scale_factor=2, mode="nearest").squeeze(1))
    cb, cr = chroma
    out = torch.stack(
        [
            y + 1.402 * (cr - 128),
            y - 0.344136 * (cb - 128) - 0.714136 * (cr - 128),
            y + 1.772 * (cb - 128),
        ],
        1,
    )
    out = torch.round(out.clamp(0, 255))[:, :, :h, :w] / 255
    return out.mean(1, keepdim=True) if c == 1 else out


CORRUPTIONS: dict[str, Corruption] = {
    "gaussian_noise": gaussian_noise,
    "shot_noise": shot_noise,
    "impulse_noise": impulse_noise,
    "defocus_blur": defocus_blur,
    "motion_blur": motion_blur,
    "gaussian_blur": gaussian_blur,
    "brightness": brightness,
    "contrast": contrast,
    "fog": fog,
    "frost": frost,
    "elastic_transform": elastic_transform,
    "pixelate": pixelate,
    "jpeg_compression": jpeg_compression,
}


def corrupt(images: torch.Tensor, name: str, severity: int, seed: int = 0) -> torch.Tensor:
    """Corrupt a batch (N, C, H, W) in [0, 1] (float, or uint8 in [0, 255]); same shape back.

    The result depends only on (images, name, severity, seed): random draws for the batch come
    from a generator seeded by (seed, name), identical at every severity.
    """
    if name not in CORRUPTIONS:
        raise EditriskError(f"unknown corruption '{name}'; choose from {', '.join(CORRUPTIONS)}")
    if severity not in SEVERITIES:
        raise EditriskError(f"severity must be 1..5, not {severity}")
    if images.ndim != 4:
        raise EditriskError(f"corrupt expects (N, C, H, W) images; got {tuple(images.shape)}")
    x = images.float() / 255 if images.dtype == torch.uint8 else images.float()
    out = CORRUPTIONS[name](x, severity, _generator(x, seed, name)).clamp(0, 1)
    return out.to(images.dtype) if images.dtype != torch.uint8 else (out * 255).round().byte()


def corrupt_suite(
    images: torch.Tensor,
    names: Iterable[str] | None = None,
    severities: Iterable[int] = SEVERITIES,
    seed: int = 0,
) -> Iterator[tuple[str, int, torch.Tensor]]:
    """Yield (name, severity, corrupted batch) for every corruption x severity."""
    for name in names or CORRUPTIONS:
        for s in severities:
            yield name, s, corrupt(images, name, s, seed)
