"""Every corruption: deterministic per seed, severity-monotone, shape- and range-preserving."""

from __future__ import annotations

import pytest
import torch

from editrisk.errors import EditriskError
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
