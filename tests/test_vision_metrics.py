"""Robustness metrics against hand-computed values, and edit-task construction."""

from __future__ import annotations

import math

import pytest
import torch

from editrisk.errors import EditriskError
from editrisk.evaluation.robustness import sigmoid
from editrisk.vision.metrics import (
    ShiftSuite,
    accuracy,
    corruption_errors,
    errors_corrected,
    fit_logit_linear,
    mean_corruption_error,
    shifted_accuracy,
)
from editrisk.vision.tasks import STYLES, digits_rewrite_task


def test_accuracy_and_errors_corrected() -> None:
    labels = torch.tensor([0, 1, 2, 3, 4])
    base = torch.tensor([0, 0, 0, 3, 0])  # wrong on 1, 2, 4
    edited = torch.tensor([0, 1, 0, 0, 4])  # fixes 1 and 4, breaks 3
    assert accuracy(base, labels) == pytest.approx(0.4)
    assert accuracy(edited, labels) == pytest.approx(0.6)
    assert errors_corrected(base, edited, labels) == pytest.approx(2 / 3)
    logits = torch.nn.functional.one_hot(edited, 5).float()
    assert accuracy(logits, labels) == pytest.approx(0.6)
    assert math.isnan(errors_corrected(labels, edited, labels))


def test_mce_relative_to_unedited() -> None:
    base = {("clean", 0): 0.9, ("fog", 1): 0.8, ("fog", 2): 0.6, ("blur", 1): 0.5, ("blur", 2): 0.5}
    edited = {
        ("clean", 0): 0.9,
        ("fog", 1): 0.7,
        ("fog", 2): 0.5,
        ("blur", 1): 0.5,
        ("blur", 2): 0.25,
    }
    ce = corruption_errors(edited, base)
    assert ce["fog"] == pytest.approx((0.3 + 0.5) / (0.2 + 0.4))
    assert ce["blur"] == pytest.approx((0.5 + 0.75) / (0.5 + 0.5))
    assert mean_corruption_error(edited, base) == pytest.approx((8 / 6 + 1.25) / 2)
    assert mean_corruption_error(base, base) == pytest.approx(1.0)
    assert shifted_accuracy(edited) == pytest.approx((0.7 + 0.5 + 0.5 + 0.25) / 4)


def test_logit_fit_and_effective_robustness() -> None:
    clean = [0.6, 0.75, 0.9, 0.97]
    shifted = [sigmoid(0.5 * math.log(c / (1 - c)) - 1.0) for c in clean]  # exactly on a line
    fit = fit_logit_linear(clean, shifted)
    assert fit.slope == pytest.approx(0.5) and fit.intercept == pytest.approx(-1.0)
    assert fit.effective_robustness(0.9, shifted[2]) == pytest.approx(0.0, abs=1e-9)
    assert fit.effective_robustness(0.9, shifted[2] + 0.05) == pytest.approx(0.05)
    with pytest.raises(EditriskError):
        fit_logit_linear([0.5], [0.4])


def test_shift_suite() -> None:
    x = torch.rand(6, 3, 8, 8)
    suite = ShiftSuite(
        x, torch.zeros(6, dtype=torch.long), names=["fog", "contrast"], severities=(1, 5)
    )
    assert sorted(suite.sets) == [
        ("clean", 0),
        ("contrast", 1),
        ("contrast", 5),
        ("fog", 1),
        ("fog", 5),
    ]
    assert all(v.dtype == torch.uint8 and v.shape == x.shape for v in suite.sets.values())


def test_digits_task_is_deterministic_and_styles_only_the_mask() -> None:
    a = digits_rewrite_task("stripes", classes=(2, 5), n_train=5, size=16, seed=3)
    b = digits_rewrite_task("stripes", classes=(2, 5), n_train=5, size=16, seed=3)
    assert torch.equal(a.train_images, b.train_images) and torch.equal(a.test_images, b.test_images)
    changed = (a.train_images != a.train_clean).any(1, keepdim=True)
    assert changed.any() and not (changed & (a.train_masks == 0)).any()
    assert set(a.train_labels.tolist()) <= {2, 5} and set(a.test_labels.tolist()) == {2, 5}
    assert a.unaffected_classes == (0, 1, 3, 4, 6, 7, 8, 9)
    assert sorted(a.heldout_styles) == sorted(set(STYLES) - {"stripes"})
    assert all(v.shape == a.test_images.shape for v in a.heldout_styles.values())
    c = digits_rewrite_task("stripes", classes=(2, 5), n_train=5, size=16, seed=4)
    assert not torch.equal(a.train_images, c.train_images)


def test_task_errors() -> None:
    with pytest.raises(EditriskError, match="style"):
        digits_rewrite_task("plaid", size=16)
    with pytest.raises(EditriskError, match="0..9"):
        digits_rewrite_task(classes=(11,), size=16)


def test_task_from_user_folder(tmp_path) -> None:
    from PIL import Image

    from editrisk.errors import InputError
    from editrisk.vision.tasks import task_from_folder

    for split in ("train", "test"):
        for cls, colour in (("car", (200, 0, 0)), ("tree", (0, 200, 0))):
            d = tmp_path / split / cls
            d.mkdir(parents=True)
            Image.new("RGB", (12, 12), colour).save(d / "a.png")
            if split == "train":
                mask = Image.new("L", (12, 12), 0)
                mask.paste(255, (0, 6, 12, 12))  # lower half is where the concept appears
                mask.save(d / "a.mask.png")
                Image.new("RGB", (12, 12), (0, 0, 0)).save(d / "a.clean.png")
    task = task_from_folder(tmp_path, ("car", "tree", "bus"), size=8)
    assert task.train_images.shape == (2, 3, 8, 8) and task.train_clean is not None
    assert task.train_labels.tolist() == [0, 1] and task.test_labels.tolist() == [0, 1]
    assert task.train_masks[0, 0, :4].sum() == 0 and task.train_masks[0, 0, 4:].all()
    assert task.affected_classes == (0, 1) and task.unaffected_classes == (2,)
    (tmp_path / "train" / "car" / "a.mask.png").unlink()
    with pytest.raises(InputError, match="a.mask.png"):
        task_from_folder(tmp_path, ("car", "tree"), size=8)
