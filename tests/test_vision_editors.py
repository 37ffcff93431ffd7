"""rewrite / ft-local / ft-global: the maths of the rewrite and the shared edit invariants."""

from __future__ import annotations

import pytest
import torch

from editrisk.delta import Delta, LowRank
from editrisk.editors import get_editor, list_editors
from editrisk.editors.rewrite import rank_one_rewrite
from editrisk.errors import EditriskError
from editrisk.vision.arch import vision_arch_for
from editrisk.vision.classifiers import Classifier, build, train_classifier
from editrisk.vision.keys import keys_and_values
from editrisk.vision.tasks import digits_rewrite_task

CASES = [
    ("rewrite", "vgg", 2),
    ("rewrite", "resnet", 3),
    ("rewrite", "vgg", -1),
    ("ft-local", "vgg", 3),
    ("ft-local", "resnet", 1),
    ("ft-global", "vgg", 4),
    ("ft-global", "resnet", 5),
]
FAST = {"ft-local": {"steps": 3, "lr": 1e-2}, "ft-global": {"steps": 3, "lr": 1e-2}}


def _clf(family: str, seed: int = 0) -> Classifier:
    return Classifier(
        build(family, width=4, seed=seed).eval(),
        vision_arch_for(family),
        f"{family}-tiny",
        tuple(str(i) for i in range(10)),
    )


@pytest.fixture(scope="module")
def trained() -> Classifier:
    return train_classifier("vgg", 4, 2, seed=0, size=16, use_cache=False)


@pytest.fixture(scope="module")
def task():
    return digits_rewrite_task("checker", classes=(1, 7), n_train=4, size=16, n_reference=64)


def _state(clf: Classifier) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in clf.model.state_dict().items()}


def test_vision_editors_registered() -> None:
    assert {"rewrite", "ft-local", "ft-global"} <= set(list_editors("vision"))


def test_rank_one_update_maps_whitened_key_to_target() -> None:
    g = torch.Generator().manual_seed(0)
    w, b = torch.randn(5, 7, generator=g), torch.randn(5, generator=g)
    k, v = torch.randn(1, 7, generator=g), torch.randn(1, 5, generator=g)
    a = torch.randn(7, 7, generator=g)
    cov = (a @ a.T + torch.eye(7)).double()
    upd = rank_one_rewrite(w, b, k, v, cov)
    assert isinstance(upd, LowRank) and upd.rank == 1
    assert torch.allclose((w + upd.dense()) @ k[0] + b, v[0], atol=1e-4)
    direction = torch.linalg.solve(cov, k[0].double()).float()
    cos = torch.nn.functional.cosine_similarity(upd.right[:, 0], direction, dim=0)
    assert abs(float(cos)) == pytest.approx(1.0, abs=1e-5)
    # keys x with x^T C^-1 k* = 0 are left unchanged
    other = torch.randn(7, generator=g).double()
    d = direction.double()
    other -= (other @ d) / (d @ d) * d
    assert torch.allclose(upd.dense().double() @ other, torch.zeros(5).double(), atol=1e-4)


def test_rewrite_of_head_with_one_exemplar_restores_clean_logits(task, trained) -> None:
    clf = trained
    one = type(task)(
        **{
            **task.__dict__,
            "train_images": task.train_images[:1],
            "train_clean": task.train_clean[:1],
            "train_masks": task.train_masks[:1],
            "train_labels": task.train_labels[:1],
        }
    )
    delta = get_editor("rewrite", layer=-1).edit(clf, one)
    clean_logits = clf.logits(one.train_clean)
    assert not torch.allclose(clf.logits(one.train_images), clean_logits, atol=1e-3)
    with delta.applied(clf.model):
        assert torch.allclose(clf.logits(one.train_images), clean_logits, atol=1e-3)


def test_rewrite_conv_moves_masked_values_towards_clean(task) -> None:
    clf = _clf("vgg")
    layer = clf.layer(2)

    def gap() -> float:
        _, styled, _ = keys_and_values(clf.model, layer, task.train_images)
        _, clean, _ = keys_and_values(clf.model, layer, task.train_clean)
        return float((styled - clean).norm())

    before = gap()
    with get_editor("rewrite", layer=2, rank=4).edit(clf, task).applied(clf.model):
        after = gap()
    assert after < before


@pytest.mark.parametrize(("method", "family", "layer"), CASES)
def test_edit_invariants(method: str, family: str, layer: int, task, tmp_path) -> None:
    clf = _clf(family)
    before = _state(clf)
    base_logits = clf.logits(task.test_images)
    delta = get_editor(method, {"layer": layer, **FAST.get(method, {})}).edit(clf, task)
    after = _state(clf)
    assert all(torch.equal(before[k], after[k]) for k in before), "edit left the model modified"
    assert all(p.requires_grad for p in clf.model.parameters())
    # only the targeted parameters change
    target = clf.layer(layer)
    names = [n for n, _ in clf.model.named_parameters()]
    if method == "ft-global":
        assert delta.names == names[names.index(f"{target}.weight") :]
    else:
        assert set(delta.names) <= {f"{target}.weight", f"{target}.bias"}
        assert f"{target}.weight" in delta.names
    assert delta.metadata["editor"] == method and delta.metadata["layer"] == target
    # the edit changes outputs; revert restores bitwise; alpha = 0 is the base model
    delta.apply(clf.model)
    assert not torch.allclose(clf.logits(task.test_images), base_logits)
    delta.revert(clf.model)
    assert all(torch.equal(before[k], v) for k, v in clf.model.state_dict().items())
    with delta.scale(0.0).applied(clf.model):
        assert torch.equal(clf.logits(task.test_images), base_logits)
    # save / load round trip gives the same edited model
    loaded = Delta.load(delta.save(tmp_path / "d.safetensors"))
    with delta.applied(clf.model):
        edited = clf.logits(task.test_images)
    with loaded.applied(clf.model):
        assert torch.equal(clf.logits(task.test_images), edited)


@pytest.mark.parametrize("method", ["ft-local", "ft-global"])
def test_fine_tuning_fits_the_exemplars(method: str, task, trained) -> None:
    clf = trained
    loss = torch.nn.functional.cross_entropy
    base = float(loss(clf.logits(task.train_images), task.train_labels))
    delta = get_editor(method, layer=3, steps=30, lr=1e-2).edit(clf, task)
    with delta.applied(clf.model):
        edited = float(loss(clf.logits(task.train_images), task.train_labels))
    assert edited < 0.5 * base


def test_bad_hparams_and_tasks(task) -> None:
    with pytest.raises(EditriskError, match="rank"):
        get_editor("rewrite", rank=0)
    with pytest.raises(EditriskError, match="steps"):
        get_editor("ft-local", steps=0)
    no_clean = type(task)(**{**task.__dict__, "train_clean": None})
    with pytest.raises(EditriskError, match="clean exemplars"):
        get_editor("rewrite").edit(_clf("vgg"), no_clean)
    with pytest.raises(EditriskError, match="editable layers"):
        get_editor("rewrite", layer=40).edit(_clf("vgg"), task)


def test_key_second_moment_matches_keys_and_is_cached(tmp_path, monkeypatch) -> None:
    """C = E[k k^T] through the shared `SecondMoment`, equal to the keys' own moment, and
    cached by model fingerprint, layer and images: the second call runs no forward pass."""
    import editrisk.vision.keys as vk

    monkeypatch.setenv("EDITRISK_CACHE", str(tmp_path))
    clf = _clf("resnet")
    images = torch.rand(7, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    layer = clf.layer(3)
    keys, _, _ = keys_and_values(clf.model, layer, images)
    k = keys.reshape(-1, keys.shape[-1]).double()
    want = k.T @ k / k.shape[0]
    got = vk.key_second_moment(clf.model, layer, images, clf.fingerprint())
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert len(list((tmp_path / "stats" / clf.fingerprint()).glob("vision-*"))) == 1
    monkeypatch.setattr(vk, "_batches", lambda *a, **k: (_ for _ in ()).throw(AssertionError))
    torch.testing.assert_close(
        vk.key_second_moment(clf.model, layer, images, clf.fingerprint()), got
    )
    with pytest.raises(AssertionError):  # other images are not the cached ones
        vk.key_second_moment(clf.model, layer, images[:3], clf.fingerprint())
