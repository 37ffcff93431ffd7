"""Every corruption: deterministic per seed, severity-monotone, shape- and range-preserving."""

from __future__ import annotations

import pytest
import torch

from editrisk.errors import EditriskError
from editrisk.vision import corruptions as C
from editrisk.vision.corruptions import CORRUPTIONS, SEVERITIES, corrupt, corrupt_suite
from editrisk.vision.data import load_digits

RANDOM = {
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "motion_blur",
    "fog",
    "frost",
    "elastic_transform",
}


@pytest.fixture(scope="module")
def batch() -> torch.Tensor:
    return load_digits("test", size=32).images[:48]


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_shape_range_and_determinism(name: str, batch: torch.Tensor) -> None:
    out = corrupt(batch, name, 3, seed=1)
    assert out.shape == batch.shape and out.dtype == batch.dtype
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    assert torch.equal(out, corrupt(batch, name, 3, seed=1))
    assert not torch.equal(out, batch)
    if name in RANDOM:
        assert not torch.equal(out, corrupt(batch, name, 3, seed=2))


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_severity_monotone(name: str, batch: torch.Tensor) -> None:
    dist = [
        float((corrupt(batch, name, s) - batch).flatten(1).norm(dim=1).mean()) for s in SEVERITIES
    ]
    assert all(a < b for a, b in zip(dist, dist[1:])), dist


@pytest.mark.parametrize("name", ["motion_blur", "jpeg_compression", "pixelate", "frost"])
def test_other_sizes_and_grayscale(name: str) -> None:
    x = torch.rand(3, 1, 21, 27)
    out = corrupt(x, name, 5)
    assert out.shape == x.shape


def test_uint8_round_trip(batch: torch.Tensor) -> None:
    u = (batch * 255).round().byte()
    out = corrupt(u, "contrast", 2)
    assert out.dtype == torch.uint8 and out.shape == u.shape
    expected = (corrupt(u.float() / 255, "contrast", 2) * 255).round().byte()
    assert torch.equal(out, expected)


def test_brightness_and_contrast_by_hand() -> None:
    x = torch.tensor([0.2, 0.4, 0.6]).view(1, 3, 1, 1).expand(1, 3, 2, 2).clone()
    bright = corrupt(x, "brightness", 1)  # value 0.6 -> 0.7, hue and saturation kept
    assert torch.allclose(bright[0, :, 0, 0], torch.tensor([0.2, 0.4, 0.6]) * 0.7 / 0.6)
    low = corrupt(x, "contrast", 5)  # (x - 0.4) * 0.15 + 0.4
    assert torch.allclose(low[0, :, 0, 0], torch.tensor([0.37, 0.4, 0.43]))


def test_suite_covers_every_family_and_severity(batch: torch.Tensor) -> None:
    keys = [(n, s) for n, s, _ in corrupt_suite(batch[:2], severities=(1, 5))]
    assert len(keys) == 2 * len(CORRUPTIONS) >= 26


def test_bad_input() -> None:
    with pytest.raises(EditriskError, match="unknown corruption"):
        corrupt(torch.rand(1, 3, 8, 8), "snow", 1)
    with pytest.raises(EditriskError, match="severity"):
        corrupt(torch.rand(1, 3, 8, 8), "fog", 6)
    with pytest.raises(EditriskError, match="N, C, H, W"):
        corrupt(torch.rand(3, 8, 8), "fog", 1)


def test_suite_equals_one_call_per_severity(batch: torch.Tensor) -> None:
    """The suite draws once per corruption; every result still equals a single `corrupt` call."""
    for name, s, out in corrupt_suite(batch[:6], severities=(2, 5), seed=3):
        assert torch.equal(out, corrupt(batch[:6], name, s, seed=3)), (name, s)


def test_shot_noise_inverts_the_poisson_cdf() -> None:
    """Each draw K is the exact Poisson quantile of its uniform u: F(K - 1) < u <= F(K), both
    from the shipped normal-approximation guess and from a guess far off (K = 0)."""
    stats = pytest.importorskip("scipy.stats")
    x = (torch.arange(256.0) / 255).repeat(3, 40, 1).unsqueeze(0)  # every 8-bit level, 120 times
    u = torch.rand(x.shape, generator=C._generator(x, 0, "shot_noise"))  # the sampler's draw
    levels = (x * 255).round()
    for s, lam in ((1, 60.0), (5, 3.0)):
        shipped = corrupt(x, "shot_noise", s) * lam
        far = C._poisson_inverse(levels, u, lambda lam, part: torch.zeros(u.numel())[part], lam)
        mu = (levels * lam / 255).double().numpy()
        unclipped = (shipped < lam).numpy()  # corrupt() clips K / lam to [0, 1]
        assert unclipped.mean() > 0.7
        for k, where in ((shipped.round(), unclipped), (far, True)):
            k = k.double().numpy()
            lo, hi = stats.poisson.cdf(k - 1, mu), stats.poisson.cdf(k, mu)
            exact = (lo < u.numpy() + 1e-6) & (u.numpy() <= hi + 1e-6)
            assert (exact | ~where).all()


def test_shot_noise_moments() -> None:
    x = torch.full((64, 3, 32, 32), 0.5)
    out = corrupt(x, "shot_noise", 1)  # lam 60: K / 60 with K ~ Poisson(30.1)
    mu = 60 * round(0.5 * 255) / 255
    assert abs(float(out.mean()) * 60 - mu) < 0.1
    assert abs(float((out * 60).var()) - mu) < 1.0


def test_matrix_filters_equal_convolutions() -> None:
    """Blurs and pixelation run as matrix products; they equal the direct convolutions."""
    x = torch.rand(4, 3, 19, 23, generator=torch.Generator().manual_seed(1))
    kernel = C.disk_kernel(2.0)
    r = kernel.shape[-1] // 2
    direct = torch.nn.functional.conv2d(
        torch.nn.functional.pad(x, (r, r, r, r), mode="reflect"),
        kernel.expand(3, 1, -1, -1),
        groups=3,
    )
    assert torch.allclose(C._depthwise(x, kernel), direct, atol=1e-6)
    small = torch.nn.functional.interpolate(x, size=(round(19 * 0.6), round(23 * 0.6)), mode="area")
    pix = torch.nn.functional.interpolate(small, size=(19, 23), mode="nearest-exact")
    assert torch.allclose(corrupt(x, "pixelate", 3), pix, atol=1e-6)
