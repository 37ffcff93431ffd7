"""Corruption throughput (images/s): the batched torch suite vs a per-image numpy/PIL/scipy
reference of the same 13 corruptions at the same 5 severities (32x32 RGB digits, CPU).

The torch side runs `corrupt_suite`, which draws once per corruption and applies five
severities; the reference corrupts one image at one severity at a time, as loops over
imagecorruptions-style functions do."""

from __future__ import annotations

import io
import math
import os
import sys
import time
import warnings

sys.path.insert(0, os.path.dirname(__file__))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from common import report, setup_threads  # noqa: E402
from PIL import Image  # noqa: E402
from scipy import ndimage  # noqa: E402

from editrisk.vision.corruptions import CORRUPTIONS, SEVERITIES, corrupt, corrupt_suite  # noqa: E402
from editrisk.vision.data import load_digits  # noqa: E402

N_TORCH = int(os.environ.get("BENCH_N_TORCH", 512))
N_REF = int(os.environ.get("BENCH_N_REF", 32))
REPEATS = int(os.environ.get("BENCH_REPEATS", 3))

# -- per-image reference: one HWC float image in [0, 1] at a time ---------------------------


def _disk(radius: float) -> np.ndarray:
    r = math.ceil(radius + 0.5)
    t = np.arange(-r, r + 1)
    k = np.clip(radius + 0.5 - np.sqrt(t[:, None] ** 2 + t[None, :] ** 2), 0, 1)
    return k / k.sum()


def _line(length: float, angle: float) -> np.ndarray:
    r = math.ceil(length)
    t = np.arange(-r, r + 1, dtype=np.float64)
    py, px = t[:, None], t[None, :]
    dx, dy = math.cos(angle), math.sin(angle)
    along = np.clip(px * dx + py * dy, 0, length)
    k = np.clip(1 - np.hypot(px - along * dx, py - along * dy), 0, None)
    return k / k.sum()


def _conv(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    return np.stack([ndimage.convolve(x[..., c], k, mode="reflect") for c in range(3)], -1)


def _plasma(h: int, rng: np.random.Generator, decay: float = 2.0) -> np.ndarray:
    out, amp, size = rng.random((2, 2)).astype(np.float32), 1.0 / decay, 4
    while size <= h:
        up = np.asarray(Image.fromarray(out).resize((size, size), Image.BILINEAR))
        out = up + amp * rng.random((size, size)).astype(np.float32)
        amp, size = amp / decay, size * 2
    out = np.asarray(Image.fromarray(out).resize((h, h), Image.BILINEAR))
    return (out - out.min()) / max(out.max() - out.min(), 1e-8)


def reference(x: np.ndarray, name: str, s: int, rng: np.random.Generator) -> np.ndarray:
    h = x.shape[0]
    if name == "gaussian_noise":
        y = x + rng.normal(size=x.shape) * (0.06, 0.10, 0.14, 0.18, 0.24)[s - 1]
    elif name == "shot_noise":
        lam = (60, 25, 12, 5, 3)[s - 1]
        y = rng.poisson(np.round(x * 255) / 255 * lam) / lam
    elif name == "impulse_noise":
        hit = rng.random(x.shape) < (0.03, 0.06, 0.09, 0.17, 0.27)[s - 1]
        y = np.where(hit, (rng.random(x.shape) < 0.5).astype(float), x)
    elif name == "defocus_blur":
        y = _conv(x, _disk((0.75, 1.0, 1.5, 2.0, 2.5)[s - 1]))
    elif name == "motion_blur":
        y = _conv(x, _line((1.5, 2.5, 3.5, 4.5, 6.0)[s - 1], rng.uniform(-math.pi, math.pi)))
    elif name == "gaussian_blur":
        y = ndimage.gaussian_filter(x, ((0.4, 0.6, 0.8, 1.0, 1.5)[s - 1],) * 2 + (0,))
    elif name == "brightness":
        v = x.max(-1, keepdims=True)
        nv = np.minimum(v + (0.1, 0.2, 0.3, 0.4, 0.5)[s - 1], 1)
        y = np.where(v > 0, x * nv / np.maximum(v, 1e-8), nv)
    elif name == "contrast":
        m = x.mean()
        y = (x - m) * (0.75, 0.5, 0.4, 0.3, 0.15)[s - 1] + m
    elif name == "fog":
        c = (0.2, 0.5, 0.75, 1.0, 1.5)[s - 1]
        y = (x + c * _plasma(h, rng)[..., None]) * x.max() / (x.max() + c)
    elif name == "frost":
        a, b = ((1.0, 0.25), (0.95, 0.4), (0.9, 0.5), (0.85, 0.6), (0.75, 0.7))[s - 1]
        seeds = (rng.random((h, h)) > 0.9).astype(float)
        streaks = ndimage.convolve(seeds, _line(3.0, rng.uniform(-math.pi, math.pi))) * 4
        ice = np.clip(0.6 * streaks + 0.5 * _plasma(h, rng, 1.5), 0, 1)
        y = a * x + b * ice[..., None] * np.array([0.85, 0.92, 1.0])
    elif name == "elastic_transform":
        alpha = (0.75, 1.25, 1.75, 2.25, 3.0)[s - 1]
        field = np.stack(
            [ndimage.gaussian_filter(rng.uniform(-1, 1, (h, h)), 3.0) for _ in range(2)]
        )
        field *= alpha / max(np.abs(field).max(), 1e-8)
        ys, xs = np.meshgrid(np.arange(h), np.arange(h), indexing="ij")
        coords = [ys + field[1], xs + field[0]]
        y = np.stack(
            [ndimage.map_coordinates(x[..., c], coords, order=1, mode="reflect") for c in range(3)],
            -1,
        )
    elif name == "pixelate":
        im = Image.fromarray((x * 255).astype(np.uint8))
        small = round(h * (0.85, 0.75, 0.6, 0.5, 0.4)[s - 1])
        im = im.resize((small, small), Image.BOX).resize((h, h), Image.NEAREST)
        y = np.asarray(im) / 255.0
    elif name == "jpeg_compression":
        buf = io.BytesIO()
        Image.fromarray((x * 255).astype(np.uint8)).save(
            buf, "JPEG", quality=(80, 65, 58, 50, 40)[s - 1]
        )
        y = np.asarray(Image.open(buf)) / 255.0
    else:
        raise KeyError(name)
    return np.clip(y, 0, 1)


def _imagecorruptions():  # noqa: ANN202
    """The `imagecorruptions` package (ImageNet-C's code as a library) when installed."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import imagecorruptions
    except ImportError:
        return None
    return imagecorruptions


def _time_torch(batch: torch.Tensor, name: str) -> float:
    """Seconds per image and severity of `corrupt_suite` over one corruption's 5 severities."""
    t = time.perf_counter()
    for _ in corrupt_suite(batch, [name], SEVERITIES, seed=0):
        pass
    return (time.perf_counter() - t) / (len(batch) * len(SEVERITIES))


def _time_reference(imgs: list[np.ndarray], name: str) -> float:
    rng = np.random.default_rng(0)
    t = time.perf_counter()
    for s in SEVERITIES:
        for x in imgs:
            reference(x, name, s, rng)
    return (time.perf_counter() - t) / (len(imgs) * len(SEVERITIES))


def _time_package(pkg, name: str, imgs: list[np.ndarray]) -> float | str:  # noqa: ANN001
    """Seconds per image and severity of imagecorruptions' `name`, or why it fails here."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pkg.corrupt(imgs[0], corruption_name=name, severity=1)
            t = time.perf_counter()
            for s in SEVERITIES:
                for x in imgs:
                    pkg.corrupt(x, corruption_name=name, severity=s)
    except Exception as e:  # noqa: BLE001 - the package breaks on newer numpy/scikit-image
        return f"fails ({type(e).__name__})"
    return (time.perf_counter() - t) / (len(imgs) * len(SEVERITIES))


def main() -> None:
    setup_threads()
    images = load_digits("test", size=32).images
    batch = images[:N_TORCH]
    ref_imgs = [x.permute(1, 2, 0).numpy().astype(np.float64) for x in images[:N_REF]]
    pkg = _imagecorruptions()
    pkg_imgs = [(x * 255).round().astype(np.uint8) for x in ref_imgs]
    corrupt(batch[:8], "fog", 1)  # warm up
    # Each side timed in its own pass (torch's and OpenCV's thread pools disturb each other when
    # interleaved); torch takes the best of REPEATS passes.
    t_torch = {name: min(_time_torch(batch, name) for _ in range(REPEATS)) for name in CORRUPTIONS}
    t_ref = {name: _time_reference(ref_imgs, name) for name in CORRUPTIONS}
    t_pkg = {name: _time_package(pkg, name, pkg_imgs) for name in CORRUPTIONS} if pkg else {}
    rows, common_t, common_p, common_n = [], 0.0, 0.0, 0
    for name in CORRUPTIONS:
        row = {
            "corruption": name,
            "torch img/s": 1 / t_torch[name],
            "reference img/s": 1 / t_ref[name],
            "speedup": t_ref[name] / t_torch[name],
        }
        if isinstance(t_pkg.get(name), str):
            row["imagecorruptions img/s"] = t_pkg[name]
        elif name in t_pkg:
            row["imagecorruptions img/s"] = 1 / t_pkg[name]
            row["speedup vs it"] = t_pkg[name] / t_torch[name]
            common_t, common_p, common_n = (
                common_t + t_torch[name],
                common_p + t_pkg[name],
                common_n + 1,
            )
        rows.append(row)
    total_t, total_r = sum(t_torch.values()), sum(t_ref.values())
    rows.append(
        {
            "corruption": "whole suite (13 x 5)",
            "torch img/s": 1 / total_t,
            "reference img/s": 1 / total_r,
            "speedup": total_r / total_t,
        }
    )
    if common_n:
        rows.append(
            {
                "corruption": f"the {common_n} imagecorruptions runs",
                "torch img/s": 1 / common_t,
                "imagecorruptions img/s": 1 / common_p,
                "speedup vs it": common_p / common_t,
            }
        )
    report(
        "corruptions",
        rows,
        note=f"torch: `corrupt_suite` on batches of {N_TORCH} 32x32 RGB digits; reference: "
        f"per-image numpy/scipy/PIL on {N_REF} images (and the `imagecorruptions` package, "
        "where installed, on the same images as uint8). img/s counts one image through one "
        "corruption at one severity; the suite row is images through all 65 (corruption, "
        "severity).",
    )


if __name__ == "__main__":
    main()
