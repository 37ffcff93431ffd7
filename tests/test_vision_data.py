"""Digits / CIFAR-10 / ImageFolder loaders, the vision architecture table and classifiers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from editrisk.errors import EditriskError, UnsupportedArchitectureError
from editrisk.vision.arch import vision_arch_for
from editrisk.vision.classifiers import build, load_classifier, train_classifier, train_testbed
from editrisk.vision.data import load_cifar10, load_digits, load_image_folder


def test_digits_split_is_disjoint_stratified_and_rgb() -> None:
    train, test = load_digits("train", size=16), load_digits("test", size=16)
    assert train.images.shape[1:] == (3, 16, 16) and test.images.shape[1:] == (3, 16, 16)
    assert len(train) + len(test) == 1797
    assert float(train.images.min()) >= 0 and float(train.images.max()) <= 1
    assert set(test.labels.tolist()) == set(range(10))
    flat_train = {tuple(x.flatten().tolist()) for x in train.images[:, 0, ::4, ::4]}
    overlap = sum(tuple(x.flatten().tolist()) in flat_train for x in test.images[:, 0, ::4, ::4])
    assert overlap < 5  # a few digits are pixel-identical in the source data, no more


def test_cifar10_binary_format(tmp_path) -> None:
    rng = np.random.default_rng(0)
    rows = np.concatenate(
        [np.array([[3], [7]], dtype=np.uint8), rng.integers(0, 256, (2, 3072), dtype=np.uint8)], 1
    )
    rows.tofile(tmp_path / "test_batch.bin")
    data = load_cifar10(tmp_path, "test")
    assert data.images.shape == (2, 3, 32, 32)
    assert data.labels.tolist() == [3, 7]
    assert data.images[1, 2, 0, 0] == pytest.approx(rows[1, 1 + 2 * 1024] / 255)
    with pytest.raises(EditriskError, match="data_batch_1.bin"):
        load_cifar10(tmp_path, "train")


def test_image_folder(tmp_path) -> None:
    from PIL import Image

    for cls, colour in (("cat", (255, 0, 0)), ("dog", (0, 0, 255))):
        (tmp_path / cls).mkdir()
        Image.new("RGB", (20, 20), colour).save(tmp_path / cls / "a.png")
    data = load_image_folder(tmp_path, size=8)
    assert data.classes == ("cat", "dog")
    assert data.images.shape == (2, 3, 8, 8)
    assert data.images[0, 0].mean() == pytest.approx(1.0) and data.images[1, 2].mean() == 1.0


@pytest.mark.parametrize("family", ["vgg", "resnet"])
def test_arch_table_names_conv_and_linear_layers(family: str) -> None:
    model = build(family, width=2)
    layers = vision_arch_for(family).editable(model)
    assert len(layers) >= 5
    kinds = [type(model.get_submodule(n)) for n in layers]
    assert all(k in (nn.Conv2d, nn.Linear) for k in kinds) and kinds[-1] is nn.Linear


def test_unknown_family() -> None:
    with pytest.raises(UnsupportedArchitectureError, match="known"):
        vision_arch_for("alexnet")


def test_training_is_deterministic_and_snapshots_match(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("EDITRISK_CACHE", str(tmp_path))
    a = train_classifier("vgg", 2, 1, seed=3, size=16, use_cache=False)
    b = train_classifier("vgg", 2, 1, seed=3, size=16, use_cache=False)
    c = train_classifier("vgg", 2, 1, seed=4, size=16, use_cache=False)
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()
    snaps = train_classifier("vgg", 2, [0, 1], seed=3, size=16)  # one run, two checkpoints
    assert snaps[1].fingerprint() == a.fingerprint() != snaps[0].fingerprint()
    cached = list((tmp_path / "vision" / "classifiers").glob("*.safetensors"))
    assert len(cached) == 2
    again = load_classifier(next(p for p in cached if "-e1-" in p.name))
    assert again.fingerprint() == a.fingerprint()
    assert again.info["epochs"] == 1 and again.arch.family == "vgg"


def test_training_learns_and_testbed_spans_accuracies(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("EDITRISK_CACHE", str(tmp_path))
    test = load_digits("test", size=16)
    bed = train_testbed("vgg", widths=(4,), epochs=(0, 3), size=16)
    accs = [float((m.predict(test.images) == test.labels).float().mean()) for m in bed]
    assert accs[0] < 0.3 < 0.6 < accs[1]


def test_layer_lookup() -> None:
    from editrisk.vision.classifiers import Classifier

    clf = Classifier(build("resnet", 2), vision_arch_for("resnet"), "r", tuple("0123456789"))
    assert clf.layer(0) == "stem.conv" and clf.layer(-1) == "head" and clf.layer("-1") == "head"
    assert clf.layer("blocks.1.conv2") == "blocks.1.conv2"
    with pytest.raises(EditriskError):
        clf.layer(99)
    with pytest.raises(EditriskError):
        clf.layer("blocks.9.conv1")


def test_torchvision_adapter() -> None:
    try:
        import torchvision  # noqa: F401
    except Exception:
        pytest.skip("torchvision unavailable beside this torch build")
    from editrisk.vision.classifiers import from_torchvision

    clf = from_torchvision("resnet18")
    assert clf.layers[0] == "conv1" and clf.layers[-1] == "fc"
    assert clf.logits(torch.rand(1, 3, 32, 32)).shape == (1, 1000)
