"""ImageNet-C style corruptions, batched in torch (CPU or GPU), deterministic per seed.

Every corruption takes images (N, C, H, W) float in [0, 1] and a severity 1..5 and returns a
tensor of the same shape in [0, 1]. Random draws come from a generator seeded by (seed,
corruption), and the same draws are reused at every severity, so distance from the clean image
grows with severity. Spatial parameters are given for 32-pixel images and scale with size.
Families follow Hendrycks & Dietterich (2019); fog and frost are procedural (no photographs).

A corruption is written in two stages: called on (images, generator), it makes every random
draw and every severity-independent intermediate once and returns `apply(severity)`.
`corrupt_suite` calls it once and applies five severities, which is most of its speed; linear
filters (blurs, pixelation) run as two small matrix products per image instead of depthwise
convolutions.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Iterable, Iterator

import torch
import torch.nn.functional as F

from editrisk.errors import EditriskError

Apply = Callable[[int], torch.Tensor]  # severity -> corrupted batch
Corruption = Callable[[torch.Tensor, torch.Generator], Apply]  # (images, draws) -> Apply
SEVERITIES = (1, 2, 3, 4, 5)

# -- helpers ---------------------------------------------------------------------------------


def _generator(x: torch.Tensor, seed: int, name: str) -> torch.Generator:
    return torch.Generator(device=x.device).manual_seed(
        seed * 1_000_003 + zlib.crc32(name.encode())
    )


def _scale(x: torch.Tensor) -> float:
    return x.shape[-1] / 32.0


def _rand(g: torch.Generator, *shape: int, device: torch.device) -> torch.Tensor:
    return torch.rand(shape, generator=g, device=device)


def _randn(g: torch.Generator, *shape: int, device: torch.device) -> torch.Tensor:
    return torch.randn(shape, generator=g, device=device)


def _axis_matrix(
    n: int, op: Callable[[torch.Tensor], torch.Tensor], device: torch.device
) -> torch.Tensor:
    """The (n, n) matrix M of a linear 1-D operator on signals (B, 1, n): M @ v == op(v).

    Built in float32, as the images: nearest-neighbour index rounding depends on the dtype."""
    eye = torch.eye(n, device=device).unsqueeze(1)
    return op(eye).squeeze(1).T


def _pad_mode(r: int, n: int) -> str:
    return "reflect" if r < n else "replicate"


def _filter_1d(taps: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """Correlation with `taps` (odd length), padded by reflection as ImageNet-C's filters."""
    r = taps.numel() // 2
    weight = taps.float().view(1, 1, -1)
    return lambda v: F.conv1d(F.pad(v, (r, r), mode=_pad_mode(r, v.shape[-1])), weight)


def _separable(x: torch.Tensor, terms: Iterable[tuple[Callable, Callable]]) -> torch.Tensor:
    """sum over terms of (vertical op) x (horizontal op) applied to every channel of x."""
    n, c, h, w = x.shape
    out = None
    for op_h, op_w in terms:
        a, b = _axis_matrix(h, op_h, x.device), _axis_matrix(w, op_w, x.device)
        y = x.reshape(-1, w) @ b.T  # horizontal pass: (N*C*H, W)
        y = y.view(n * c, h, w).transpose(1, 2).reshape(-1, h) @ a.T  # vertical: (N*C*W, H)
        y = y.view(n, c, w, h).transpose(2, 3)
        out = y if out is None else out + y
    return out.contiguous()


def _depthwise(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Convolve every channel of x with a 2-D kernel (k, k) or per-image kernels (N, k, k)."""
    n, c, h, w = x.shape
    if kernel.ndim == 2:  # shared kernel: an exact sum of separable terms (its SVD)
        u, s, vh = torch.linalg.svd(kernel.to(torch.float64))
        keep = s > s[0] * 1e-7
        terms = [(_filter_1d(u[:, i] * s[i]), _filter_1d(vh[i])) for i in keep.nonzero()[:, 0]]
        return _separable(x, terms)
    k = kernel.shape[-1]
    pad = k // 2
    xp = F.pad(x, (pad, pad, pad, pad), mode=_pad_mode(pad, min(h, w)))
    weight = kernel.repeat_interleave(c, 0).unsqueeze(1).to(x.dtype)  # (N*C, 1, k, k)
    out = F.conv2d(xp.reshape(1, n * c, h + 2 * pad, w + 2 * pad), weight, groups=n * c)
    return out.reshape(n, c, h, w)


def _gaussian_taps(sigma: float, device: torch.device | None = None) -> torch.Tensor:
    r = max(1, math.ceil(3 * sigma))
    t = torch.arange(-r, r + 1, dtype=torch.float64, device=device)
    g = torch.exp(-(t**2) / (2 * sigma**2))
    return g / g.sum()


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable gaussian blur with reflect padding."""
    taps = _filter_1d(_gaussian_taps(sigma, x.device))
    return _separable(x, [(taps, taps)])


# -- noise -----------------------------------------------------------------------------------


def gaussian_noise(x: torch.Tensor, g: torch.Generator) -> Apply:
    noise = _randn(g, *x.shape, device=x.device)
    return lambda s: x + (0.06, 0.10, 0.14, 0.18, 0.24)[s - 1] * noise


def _poisson_cdf_table(lam: float, device: torch.device) -> tuple[torch.Tensor, int]:
    """(256, kmax + 2) table: row L holds P(K < k) for K ~ Poisson(lam * L / 255), k = 0..kmax+1."""
    kmax = math.ceil(lam + 12 * math.sqrt(lam) + 20)  # P(K > kmax) < 1e-30
    mu = lam * torch.arange(256, dtype=torch.float64, device=device)[:, None] / 255
    k = torch.arange(kmax + 1, dtype=torch.float64, device=device)
    pmf = torch.exp(k * torch.log(mu) - mu - torch.lgamma(k + 1))
    pmf[0] = 0
    pmf[0, 0] = 1  # mean 0: K = 0
    table = torch.cat([torch.zeros_like(mu), pmf.cumsum(1)], 1)
    return table.float(), kmax


def _poisson_inverse(
    levels: torch.Tensor, u: torch.Tensor, guess: Callable[[float, slice], torch.Tensor], lam: float
) -> torch.Tensor:
    """Exact Poisson(lam * levels / 255) draws by inverting the CDF at uniforms `u`.

    `guess(lam)` (a Cornish-Fisher normal approximation) is right for ~98 % of pixels; the
    rest step up or down against the tabulated CDF until F(K-1) < u <= F(K). Works on flat
    chunks that stay in cache, which halves the time on CPU.
    """
    table, kmax = _poisson_cdf_table(lam, u.device)
    flat, width = table.flatten(), kmax + 2
    out = torch.empty(u.numel(), device=u.device)
    for chunk in range(0, u.numel(), _CHUNK):
        part = slice(chunk, chunk + _CHUNK)
        uu = u.view(-1)[part]
        k = guess(lam, part).clamp_(0, kmax)
        pos = (levels.view(-1)[part] * width + k).long()
        wrong = ((uu > flat.take(pos + 1)) | (uu <= flat.take(pos))).nonzero()[:, 0]
        if wrong.numel():
            uw, pw = uu[wrong], pos[wrong]
            while (step := (uw > flat.take(pw + 1)).long() - (uw <= flat.take(pw)).long()).any():
                pw += step
            k[wrong] = (pw % width).float()
        out[part] = k
    return out.view_as(u)


_CHUNK = 1 << 17  # elements per chunk of the Poisson sampler (512 KiB of float32)


def shot_noise(x: torch.Tensor, g: torch.Generator) -> Apply:
    """Poisson noise on the 8-bit image (as ImageNet-C's uint8 inputs): K ~ Poisson(lam x)."""
    levels = (x.clamp(0, 1) * 255).round().contiguous()
    u = _rand(g, *x.shape, device=x.device)
    z = torch.special.ndtri(u).clamp_(-9, 9)
    spread, skew = (levels.sqrt() * z).view(-1), ((z * z + 2) / 6).view(-1)  # lam-free terms
    flat_levels = levels.view(-1)

    def guess(lam: float, part: slice) -> torch.Tensor:
        mean = flat_levels[part] * (lam / 255)
        return torch.floor(mean + spread[part] * math.sqrt(lam / 255) + skew[part])

    def apply(s: int) -> torch.Tensor:
        lam = (60.0, 25.0, 12.0, 5.0, 3.0)[s - 1]
        return _poisson_inverse(levels, u, guess, lam) / lam

    return apply


def impulse_noise(x: torch.Tensor, g: torch.Generator) -> Apply:
    hit = _rand(g, *x.shape, device=x.device)
    salt = (_rand(g, *x.shape, device=x.device) < 0.5).to(x.dtype)
    return lambda s: torch.where(hit < (0.03, 0.06, 0.09, 0.17, 0.27)[s - 1], salt, x)


# -- blur ------------------------------------------------------------------------------------


def gaussian_blur(x: torch.Tensor, g: torch.Generator) -> Apply:
    return lambda s: _blur(x, (0.4, 0.6, 0.8, 1.0, 1.5)[s - 1] * _scale(x))


def disk_kernel(radius: float, device: torch.device | None = None) -> torch.Tensor:
    """Anti-aliased disk (defocus) kernel of the given radius, normalised."""
    r = math.ceil(radius + 0.5)
    t = torch.arange(-r, r + 1, dtype=torch.float32, device=device)
    dist = torch.sqrt(t[:, None] ** 2 + t[None, :] ** 2)
    k = (radius + 0.5 - dist).clamp(0, 1)
    return k / k.sum()


def defocus_blur(x: torch.Tensor, g: torch.Generator) -> Apply:
    radii = (0.75, 1.0, 1.5, 2.0, 2.5)
    return lambda s: _depthwise(x, disk_kernel(radii[s - 1] * _scale(x), x.device))


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


def motion_blur(x: torch.Tensor, g: torch.Generator) -> Apply:
    angles = (_rand(g, x.shape[0], device=x.device) * 2 - 1) * math.pi
    lengths = (1.5, 2.5, 3.5, 4.5, 6.0)
    return lambda s: _depthwise(x, motion_kernels(lengths[s - 1] * _scale(x), angles))


# -- weather and digital ---------------------------------------------------------------------


def brightness(x: torch.Tensor, g: torch.Generator) -> Apply:
    """Raise the HSV value channel by c, keeping hue and saturation."""
    v = x.amax(1, keepdim=True)

    def apply(s: int) -> torch.Tensor:
        v_new = (v + (0.1, 0.2, 0.3, 0.4, 0.5)[s - 1]).clamp(max=1)
        ratio = torch.where(v > 0, v_new / v.clamp(min=1e-8), torch.zeros_like(v))
        return torch.where(v > 0, x * ratio, v_new.expand_as(x))

    return apply


def contrast(x: torch.Tensor, g: torch.Generator) -> Apply:
    mean = x.mean((1, 2, 3), keepdim=True)
    return lambda s: (x - mean) * (0.75, 0.5, 0.4, 0.3, 0.15)[s - 1] + mean


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


def fog(x: torch.Tensor, g: torch.Generator) -> Apply:
    peak = x.amax((1, 2, 3), keepdim=True)
    haze = plasma(x.shape[0], x.shape[2], x.shape[3], g, x.device)

    def apply(s: int) -> torch.Tensor:
        c = (0.2, 0.5, 0.75, 1.0, 1.5)[s - 1]
        return (x + c * haze) * peak / (peak + c)

    return apply


def frost_texture(n: int, h: int, w: int, g: torch.Generator, device: torch.device) -> torch.Tensor:
    """Procedural ice (N, 3, H, W) in [0, 1]: sparse crystals streaked in random directions."""
    seeds = (_rand(g, n, 1, h, w, device=device) > 0.9).float()
    angles = (_rand(g, n, device=device) * 2 - 1) * math.pi
    streaks = _depthwise(seeds, motion_kernels(3.0 * h / 32, angles)) * 4
    haze = plasma(n, h, w, g, device, decay=1.5)
    ice = (0.6 * streaks + 0.5 * haze).clamp(0, 1)
    tint = torch.tensor([0.85, 0.92, 1.0], device=device).view(1, 3, 1, 1)
    return ice * tint


def frost(x: torch.Tensor, g: torch.Generator) -> Apply:
    ice = frost_texture(x.shape[0], x.shape[2], x.shape[3], g, x.device)[:, : x.shape[1]]
    mix = ((1.0, 0.25), (0.95, 0.4), (0.9, 0.5), (0.85, 0.6), (0.75, 0.7))
    return lambda s: mix[s - 1][0] * x + mix[s - 1][1] * ice


def elastic_transform(x: torch.Tensor, g: torch.Generator) -> Apply:
    """Warp by a smooth random displacement field of amplitude alpha pixels."""
    n, _, h, w = x.shape
    field = _blur(_rand(g, n, 2, h, w, device=x.device) * 2 - 1, 3.0 * _scale(x))
    field = field / field.abs().amax((1, 2, 3), keepdim=True).clamp(min=1e-8)
    field = field.permute(0, 2, 3, 1) * torch.tensor([2 / (w - 1), 2 / (h - 1)], device=x.device)
    ys, xs = torch.meshgrid(
        torch.linspace(-1, 1, h, device=x.device),
        torch.linspace(-1, 1, w, device=x.device),
        indexing="ij",
    )
    identity = torch.stack([xs, ys], -1)  # (H, W, 2) in grid_sample's [-1, 1] coordinates

    def apply(s: int) -> torch.Tensor:
        alpha = (0.75, 1.25, 1.75, 2.25, 3.0)[s - 1] * _scale(x)
        grid = identity + alpha * field
        return F.grid_sample(
            x, grid, mode="bilinear", padding_mode="reflection", align_corners=True
        )

    return apply


def pixelate(x: torch.Tensor, g: torch.Generator) -> Apply:
    """Box-downsample by a factor, then nearest-upsample back (both separable, as matrices)."""

    def axis(f: float) -> Callable[[torch.Tensor], torch.Tensor]:
        def op(v: torch.Tensor) -> torch.Tensor:
            n = v.shape[-1]
            small = F.interpolate(v, size=max(1, round(n * f)), mode="area")
            return F.interpolate(small, size=n, mode="nearest-exact")

        return op

    factors = (0.85, 0.75, 0.6, 0.5, 0.4)
    return lambda s: _separable(x, [(axis(factors[s - 1]), axis(factors[s - 1]))])


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


def _dct_matrix(device: torch.device) -> torch.Tensor:
    k = torch.arange(8, dtype=torch.float32, device=device)
    m = torch.cos((2 * k[None, :] + 1) * k[:, None] * math.pi / 16) * math.sqrt(2 / 8)
    m[0] /= math.sqrt(2)
    return m


def _quality_table(table: torch.Tensor, quality: int) -> torch.Tensor:
    scale = 5000 / quality if quality < 50 else 200 - 2 * quality
    return ((table * scale + 50) // 100).clamp(1, 255)


def _blocks(p: torch.Tensor) -> torch.Tensor:
    """Plane (N, H, W) in [0, 255] (H, W multiples of 8) -> level-shifted 8x8 blocks (B, 64)."""
    n, h, w = p.shape
    return (p - 128).reshape(n, h // 8, 8, w // 8, 8).transpose(2, 3).reshape(-1, 64)


def _unblocks(b: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    n, h, w = shape
    return b.reshape(n, h // 8, w // 8, 8, 8).transpose(2, 3).reshape(n, h, w) + 128


def jpeg_compression(x: torch.Tensor, g: torch.Generator) -> Apply:
    """Baseline JPEG (YCbCr, 4:2:0 chroma, standard tables at IJG quality) without entropy code.

    The 8x8 DCT of every block is taken once; each severity only quantises and inverts it.
    """
    n, c, h, w = x.shape
    rgb = x.clamp(0, 1).expand(n, 3, h, w) * 255 if c == 1 else x.clamp(0, 1) * 255
    rgb = F.pad(rgb, (0, -w % 16, 0, -h % 16), mode="replicate")
    r, gch, b = rgb.unbind(1)
    luma = 0.299 * r + 0.587 * gch + 0.114 * b
    cb = 128 - 0.168736 * r - 0.331264 * gch + 0.5 * b
    cr = 128 + 0.5 * r - 0.418688 * gch - 0.081312 * b
    d = _dct_matrix(x.device)
    dct2 = torch.kron(d, d)  # row-major vec(d @ B @ d.T) == dct2 @ vec(B)
    planes = [(luma, _LUMA_Q)] + [
        (F.avg_pool2d(p.unsqueeze(1), 2).squeeze(1), _CHROMA_Q) for p in (cb, cr)
    ]
    coefs = [(_blocks(p) @ dct2.T, p.shape, table.to(x.device).flatten()) for p, table in planes]

    def decode(coef: torch.Tensor, shape: torch.Size, table: torch.Tensor, quality: int):
        q = _quality_table(table, quality)
        return _unblocks((torch.round(coef / q) * q) @ dct2, shape)

    def apply(s: int) -> torch.Tensor:
        quality = (80, 65, 58, 50, 40)[s - 1]
        y, cb, cr = (decode(*plane, quality) for plane in coefs)
        cb, cr = (p.repeat_interleave(2, -2).repeat_interleave(2, -1) for p in (cb, cr))
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

    return apply


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


def _check(images: torch.Tensor, name: str, severities: Iterable[int]) -> None:
    if name not in CORRUPTIONS:
        raise EditriskError(f"unknown corruption '{name}'; choose from {', '.join(CORRUPTIONS)}")
    for severity in severities:
        if severity not in SEVERITIES:
            raise EditriskError(f"severity must be 1..5, not {severity}")
    if images.ndim != 4:
        raise EditriskError(f"corrupt expects (N, C, H, W) images; got {tuple(images.shape)}")


def _prepare(images: torch.Tensor, name: str, seed: int) -> Callable[[int], torch.Tensor]:
    """Draw once for (images, name, seed); return severity -> corrupted batch in images' dtype."""
    x = images.float() / 255 if images.dtype == torch.uint8 else images.float()
    apply = CORRUPTIONS[name](x, _generator(x, seed, name))

    def at(severity: int) -> torch.Tensor:
        out = apply(severity).clamp(0, 1)
        return out.to(images.dtype) if images.dtype != torch.uint8 else (out * 255).round().byte()

    return at


def corrupt(images: torch.Tensor, name: str, severity: int, seed: int = 0) -> torch.Tensor:
    """Corrupt a batch (N, C, H, W) in [0, 1] (float, or uint8 in [0, 255]); same shape back.

    The result depends only on (images, name, severity, seed): random draws for the batch come
    from a generator seeded by (seed, name), identical at every severity.
    """
    _check(images, name, [severity])
    return _prepare(images, name, seed)(severity)


def corrupt_suite(
    images: torch.Tensor,
    names: Iterable[str] | None = None,
    severities: Iterable[int] = SEVERITIES,
    seed: int = 0,
) -> Iterator[tuple[str, int, torch.Tensor]]:
    """Yield (name, severity, corrupted batch) for every corruption x severity; each equals
    `corrupt(images, name, severity, seed)`, but draws are made once per corruption."""
    names, severities = list(names or CORRUPTIONS), list(severities)
    for name in names:
        _check(images, name, severities)
    for name in names:
        at = _prepare(images, name, seed)
        for s in severities:
            yield name, s, at(s)
