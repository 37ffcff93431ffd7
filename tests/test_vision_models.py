"""Standard VGG/ResNet in torchvision's layout (editrisk.vision.zoo) and ImageNet-C-style shift
folders (editrisk.vision.shiftfolder): layout, weight round trips, refusals, an edit on each
family, and a corrupted folder read as a shift set with the right labels."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from editrisk.delta import Delta
from editrisk.editors import get_editor
from editrisk.errors import EditriskError, InputError
from editrisk.vision.arch import vision_arch_for
from editrisk.vision.keys import keys_and_values
from editrisk.vision.shiftfolder import load_shift_folder
from editrisk.vision.tasks import digits_rewrite_task
from editrisk.vision.zoo import STANDARD_MODELS, build, editable_layers, layout, load_standard

BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


# The layout written out from torchvision's models/vgg.py and models/resnet.py (read, not
# imported): VGG `features` is a Sequential of conv [, bn], relu per width and a max-pool per
# "M"; `classifier` holds Linear layers at 0, 3, 6. ResNet: conv1, bn1, layer1-4 of blocks with
# conv/bn pairs (1-2 basic, 1-3 bottleneck) and downsample.0 (conv) / .1 (bn), then fc.
def _vgg_keys(cfg: list[int | str], bn: bool) -> list[str]:
    keys, i = [], 0
    for v in cfg:
        if v == "M":
            i += 1
            continue
        keys += [f"features.{i}.weight", f"features.{i}.bias"]
        if bn:
            keys += [f"features.{i + 1}.{b}" for b in BN]
        i += 3 if bn else 2
    return keys + [f"classifier.{j}.{p}" for j in (0, 3, 6) for p in ("weight", "bias")]


def _resnet_keys(n_convs: int, depths: list[int]) -> list[str]:
    keys = ["conv1.weight", *(f"bn1.{b}" for b in BN)]
    for s, n in enumerate(depths, 1):
        for j in range(n):
            for c in range(1, n_convs + 1):
                keys += [f"layer{s}.{j}.conv{c}.weight", *(f"layer{s}.{j}.bn{c}.{b}" for b in BN)]
            if j == 0 and (s > 1 or n_convs == 3):
                keys += [f"layer{s}.0.downsample.0.weight"]
                keys += [f"layer{s}.0.downsample.1.{b}" for b in BN]
    return keys + ["fc.weight", "fc.bias"]


D = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
EXPECTED_KEYS = {
    "vgg16": _vgg_keys(D, False),
    "vgg16_bn": _vgg_keys(D, True),
    "resnet18": _resnet_keys(2, [2, 2, 2, 2]),
    "resnet50": _resnet_keys(3, [3, 4, 6, 3]),
}
# torchvision's published parameter counts (its model documentation), buffers excluded
PARAMS = {
    "vgg11": 132_863_336, "vgg11_bn": 132_868_840, "vgg13": 133_047_848,
    "vgg13_bn": 133_053_736, "vgg16": 138_357_544, "vgg16_bn": 138_365_992,
    "vgg19": 143_667_240, "vgg19_bn": 143_678_248, "resnet18": 11_689_512,
    "resnet34": 21_797_672, "resnet50": 25_557_032, "resnet101": 44_549_160,
    "resnet152": 60_192_808,
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(EXPECTED_KEYS))
def test_state_dict_keys_are_torchvisions(name: str) -> None:
    assert list(layout(name)) == EXPECTED_KEYS[name]


@pytest.mark.parametrize("name", STANDARD_MODELS)
def test_parameter_counts_are_torchvisions(name: str) -> None:
    shapes = layout(name)
    n = sum(math.prod(s) for k, s in shapes.items() if not k.endswith(BN[2:]))
    assert n == PARAMS[name]
    first, last = ("features.0", "classifier.6") if name.startswith("vgg") else ("conv1", "fc")
    assert shapes[f"{first}.weight"][:2] == (64, 3) and shapes[f"{last}.weight"][0] == 1000


@pytest.mark.parametrize("name", ["vgg16", "vgg16_bn", "resnet18", "resnet50"])
def test_editable_layers_are_conv_or_linear_modules(name: str) -> None:
    layers = editable_layers(name)
    keys = layout(name)
    assert all(f"{layer}.weight" in keys and len(keys[f"{layer}.weight"]) in (2, 4)
               for layer in layers)  # fmt: skip
    convs = [k for k, s in keys.items() if k.endswith("weight") and len(s) == 4]
    if name.startswith("vgg"):
        assert len(layers) == int(name[3:5]) and len(convs) == len(layers) - 3
    else:
        assert not any("downsample" in x for x in layers) and layers[-1] == "fc"
    assert vision_arch_for(name).layers == layers


def _images(n: int = 3, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _randomised(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Non-trivial batch-norm statistics, so a lost buffer changes the outputs."""
    g = torch.Generator().manual_seed(seed)
    for k, v in model.state_dict().items():
        if k.endswith(("running_mean", "running_var")):
            v.copy_(torch.rand(v.shape, generator=g) + (0.5 if k.endswith("var") else -0.5))
    return model


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module]:
    model = _randomised(build("resnet18", seed=3), 3)
    path = tmp_path_factory.mktemp("w") / "resnet18.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path, model


@pytest.fixture(scope="module")
def vgg16_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module]:
    model = build("vgg16", seed=1)
    path = tmp_path_factory.mktemp("w") / "vgg16.pt"
    torch.save(model.state_dict(), path)
    return path, model


def test_round_trip_safetensors_gives_identical_outputs(resnet18_file) -> None:  # noqa: ANN001
    path, model = resnet18_file
    clf = load_standard("resnet18", path)
    x = _images()
    with torch.no_grad():
        assert torch.equal(clf.logits(x), model(x))
    assert clf.classes[:2] == ("0", "1") and len(clf.classes) == 1000
    assert not torch.equal(clf.logits(x), load_standard("resnet18", seed=4).logits(x))


def test_round_trip_torch_file_gives_identical_outputs(vgg16_file, tmp_path: Path) -> None:  # noqa: ANN001
    path, model = vgg16_file
    x = _images(2)
    with torch.no_grad():
        want = model(x)
    assert torch.equal(load_standard("vgg16", path).logits(x), want)
    wrapped = tmp_path / "ckpt.pth"  # a training checkpoint: state_dict under a key, DataParallel
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in
                                           model.state_dict().items()}}, wrapped)  # fmt: skip
    assert torch.equal(load_standard("vgg16", wrapped).logits(x), want)


def test_fewer_classes_and_names_follow_the_weights(tmp_path: Path) -> None:
    model = build("resnet18", n_classes=3, seed=0)
    path = tmp_path / "r.safetensors"
    save_file(model.state_dict(), str(path))
    clf = load_standard("resnet18", path, classes=["cat", "dog", "fox"])
    assert clf.classes == ("cat", "dog", "fox") and clf.logits(_images(1)).shape == (1, 3)
    with pytest.raises(EditriskError, match="2 class names for the 3 outputs"):
        load_standard("resnet18", path, classes=["cat", "dog"])


def _bad_files(tmp: Path, good: dict[str, torch.Tensor]) -> list[tuple[Path, str, str]]:
    """(file, model, words its refusal must contain)."""
    out = []
    missing = {k: v for k, v in good.items() if k != "layer3.1.conv2.weight"}
    save_file(missing, str(tmp / "missing.safetensors"))
    out.append((tmp / "missing.safetensors", "resnet18", "missing key 'layer3.1.conv2.weight'"))
    shaped = {**good, "fc.bias": torch.zeros(999)}
    save_file(shaped, str(tmp / "shape.safetensors"))
    out.append((tmp / "shape.safetensors", "resnet18", "key 'fc.bias' has shape (999,)"))
    save_file({**good, "head.weight": torch.zeros(2)}, str(tmp / "extra.safetensors"))
    out.append((tmp / "extra.safetensors", "resnet18", "unexpected key 'head.weight'"))
    out.append((tmp / "missing.safetensors", "resnet50", "missing key"))  # another family
    (tmp / "junk.safetensors").write_bytes(b"not a safetensors file at all")
    out.append((tmp / "junk.safetensors", "resnet18", "not a readable safetensors file"))
    torch.save({"weights": Delta}, tmp / "pickled.pt")  # a class: refused by weights_only
    out.append((tmp / "pickled.pt", "resnet18", "weights_only=True"))
    torch.save({"fc.weight": [1.0, 2.0]}, tmp / "lists.pt")
    out.append((tmp / "lists.pt", "resnet18", "'fc.weight' is not a named tensor"))
    out.append((tmp / "absent.safetensors", "resnet18", "weights file not found"))
    return out


def test_bad_weight_files_are_refused_by_file_and_key(resnet18_file, tmp_path: Path) -> None:  # noqa: ANN001
    _, model = resnet18_file
    good = {k: v.contiguous() for k, v in model.state_dict().items()}
    for path, name, words in _bad_files(tmp_path, good):
        with pytest.raises(InputError) as err:
            load_standard(name, path)
        assert str(path) in str(err.value) and words in str(err.value), (path, str(err.value))


def test_old_checkpoints_without_num_batches_tracked_load(resnet18_file, tmp_path: Path) -> None:  # noqa: ANN001
    path, model = resnet18_file
    old = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    save_file({k: v.contiguous() for k, v in old.items()}, str(tmp_path / "old.safetensors"))
    x = _images(1)
    assert torch.equal(load_standard("resnet18", tmp_path / "old.safetensors").logits(x),
                       load_standard("resnet18", path).logits(x))  # fmt: skip


@pytest.fixture(scope="module")
def task():
    return digits_rewrite_task("checker", classes=(1, 7), n_train=4, size=32, n_reference=24)


@pytest.mark.parametrize(
    ("which", "layer"), [("vgg16", "features.5"), ("resnet18", "layer1.0.conv2")]
)
def test_rewrite_edits_a_loaded_standard_model(
    which: str,
    layer: str,
    task,
    vgg16_file,
    resnet18_file,  # noqa: ANN001
) -> None:
    """The existing rewrite editor on loaded weights: one parameter changes, the styled
    exemplars' layer outputs move toward the clean ones, and revert restores every weight."""
    path = (vgg16_file if which == "vgg16" else resnet18_file)[0]
    clf = load_standard(which, path)
    before = {k: v.clone() for k, v in clf.model.state_dict().items()}
    delta = get_editor("rewrite", {"layer": layer, "rank": 1}).edit(clf, task)
    assert list(delta) == [f"{layer}.weight"]
    _, clean, _ = keys_and_values(clf.model, layer, task.train_clean)
    _, styled, _ = keys_and_values(clf.model, layer, task.train_images)
    with delta.applied(clf.model):
        _, edited, _ = keys_and_values(clf.model, layer, task.train_images)
        changed = [k for k, v in clf.model.state_dict().items() if not torch.equal(v, before[k])]
    assert changed == [f"{layer}.weight"]
    assert (edited - clean).norm() < 0.9 * (styled - clean).norm()
    assert all(torch.equal(v, before[k]) for k, v in clf.model.state_dict().items())


def _write(path: Path, colour: tuple[int, int, int], size: int = 8) -> np.ndarray:
    arr = np.zeros((size, size, 3), dtype=np.uint8)
    arr[...] = colour
    arr[0, 0] = (255 - colour[0], 7, 9)  # a corner pixel, so orientation matters
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return arr


def _imagenet_c(root: Path) -> dict[str, np.ndarray]:
    """gaussian_noise/{1,2} and fog/1 with classes n02 (2 images) and n01 (1 image, .jpeg)."""
    pixels = {}
    for corr, sevs in (("gaussian_noise", (1, 2)), ("fog", (1,))):
        for s in sevs:
            base = root / corr / str(s)
            pixels[f"{corr}/{s}/a"] = _write(base / "n02" / "a.png", (10 * s, 200, 30))
            _write(base / "n02" / "b.png", (90, 90, 90))
            _write(base / "n01" / "c.jpeg", (250, 250, 250))
    return pixels


def test_corruption_folder_is_a_shift_set_with_labels_by_folder_name(tmp_path: Path) -> None:
    pixels = _imagenet_c(tmp_path / "c")
    model_classes = ["n00", "n01", "n02", "n03"]
    shift = load_shift_folder(tmp_path / "c", model_classes, size=8)
    assert sorted(shift.sets) == [("fog", 1), ("gaussian_noise", 1), ("gaussian_noise", 2)]
    assert shift.corruptions == ["fog", "gaussian_noise"]
    for key in shift.sets:  # sorted classes, then sorted files: n01/c.jpeg, n02/a.png, n02/b.png
        assert shift.labels_of[key].tolist() == [1, 2, 2]
        assert shift.sets[key].shape == (3, 3, 8, 8) and shift.sets[key].dtype == torch.uint8
    png = shift.sets[("gaussian_noise", 2)][1].permute(1, 2, 0).numpy()
    assert np.array_equal(png, pixels["gaussian_noise/2/a"])  # png is lossless, no resize at 8
    own = load_shift_folder(tmp_path / "c", size=8)  # no model classes: sorted folder names
    assert own.classes == ("n01", "n02") and own.labels_of[("fog", 1)].tolist() == [0, 1, 1]
    picked = load_shift_folder(tmp_path / "c", size=8, corruptions=["fog"], limit_per_class=1)
    assert list(picked.sets) == [("fog", 1)] and picked.labels_of[("fog", 1)].tolist() == [0, 1]


class _Fixed:
    """A stand-in classifier predicting class 2 for every image."""

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0],), 2)


def test_shift_set_accuracies_use_each_sets_labels(tmp_path: Path) -> None:
    _imagenet_c(tmp_path / "c")
    _write(tmp_path / "clean" / "n01" / "x.png", (1, 2, 3))
    shift = load_shift_folder(tmp_path / "c", ["n00", "n01", "n02"], size=8,
                              clean=tmp_path / "clean")  # fmt: skip
    acc = shift.accuracies(shift.predictions(_Fixed()))
    assert acc[("clean", 0)] == 0.0 and acc[("fog", 1)] == pytest.approx(2 / 3)


def test_bad_corruption_folders_are_refused_by_name(tmp_path: Path) -> None:
    _imagenet_c(tmp_path / "c")
    with pytest.raises(InputError, match="class folder 'n02' is not a class of the model") as e:
        load_shift_folder(tmp_path / "c", ["n00", "n01"], size=8)
    assert str(tmp_path / "c") in str(e.value)
    (tmp_path / "c" / "fog" / "heavy").mkdir()
    with pytest.raises(InputError, match="severity folders named 1, 2.*'heavy'"):
        load_shift_folder(tmp_path / "c", size=8)
    with pytest.raises(InputError, match="no folder for corruption"):
        load_shift_folder(tmp_path / "c", size=8, corruptions=["snow"], severities=[1])
    (tmp_path / "empty" / "fog" / "1" / "n01").mkdir(parents=True)
    with pytest.raises(InputError, match="no .png/.jpg/.jpeg images"):
        load_shift_folder(tmp_path / "empty", size=8)
    (tmp_path / "c2" / "fog" / "1" / "n01").mkdir(parents=True)
    (tmp_path / "c2" / "fog" / "1" / "n01" / "bad.png").write_bytes(b"no image")
    with pytest.raises(InputError, match="unreadable image"):
        load_shift_folder(tmp_path / "c2", size=8)


def _rewrite_folder(root: Path, classes: list[str]) -> None:
    """Exemplars (x.png, x.mask.png, x.clean.png) and test images for a folder task."""
    g = np.random.default_rng(0)
    for c in classes:
        for i in range(2):
            clean = (g.random((32, 32, 3)) * 255).astype(np.uint8)
            styled = clean.copy()
            styled[:, :16] = (255, 0, 255)  # the concept: a magenta left half
            mask = np.zeros((32, 32), dtype=np.uint8)
            mask[:, :16] = 255
            folder = root / "train" / c
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(styled).save(folder / f"x{i}.png")
            Image.fromarray(mask).save(folder / f"x{i}.mask.png")
            Image.fromarray(clean).save(folder / f"x{i}.clean.png")
            (root / "test" / c).mkdir(parents=True, exist_ok=True)
            Image.fromarray(styled).save(root / "test" / c / f"t{i}.png")


def test_vision_study_on_a_standard_model_with_folders(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """The engine's vision study on a ResNet-18 with local weights, an ImageNet-C-style shift
    folder with its clean images, and a rewrite task from a folder."""
    from editrisk.engine import load_run, resolve, run_study

    monkeypatch.setenv("EDITRISK_CACHE", str(tmp_path / "cache"))
    classes = ["n00", "n01", "n02"]
    weights = tmp_path / "r18.safetensors"
    save_file(_randomised(build("resnet18", n_classes=3, seed=5), 5).state_dict(), str(weights))
    (tmp_path / "classes.txt").write_text("# synsets\n" + "\n".join(classes) + "\n")
    _imagenet_c(tmp_path / "c")
    for c, colour in (("n01", (200, 10, 10)), ("n02", (10, 10, 200))):
        _write(tmp_path / "clean" / c / "a.png", colour)
    _rewrite_folder(tmp_path / "task", ["n01", "n02"])
    cfg = resolve({
        "name": "std", "family": "vision",
        "model": {"arch": "resnet18", "weights": str(weights),
                  "classes": str(tmp_path / "classes.txt"), "size": 32},
        "data": {"shift_folder": str(tmp_path / "c"), "clean_folder": str(tmp_path / "clean")},
        "edit_sets": {"magenta": {"folder": str(tmp_path / "task")}},
        "protocol": {"name": "batch"},
        "schedule": {"immediate": False, "final": True, "general_every": 1},
        "evaluation": {"corruptions": "all", "severities": [1, 2]},
        "grid": {"layer": [2], "alpha": [0.0, 1.0], "edit_set": ["magenta"]},
        "methods": ["rewrite"],
    })  # fmt: skip
    rows = load_run(run_study(cfg, tmp_path / "run").path).rows
    acc = {(r["alpha"], r["corruption"], r["severity"]): r["acc.top1"] for r in rows
           if r["kind"] == "accuracy" and r["set"] == "general"}  # fmt: skip
    assert {k[1:] for k in acc} == {("clean", 0), ("fog", 1), ("gaussian_noise", 1),
                                    ("gaussian_noise", 2)}  # fmt: skip
    clf = load_standard("resnet18", weights, classes)
    shift = load_shift_folder(tmp_path / "c", classes, 32, clean=tmp_path / "clean")
    want = shift.accuracies(shift.predictions(clf))
    assert all(acc[(0.0, c, s)] == pytest.approx(v) for (c, s), v in want.items())
    summary = [r for r in rows if r["kind"] == "summary" and r["alpha"] == 1.0]
    assert len(summary) == 1 and summary[0]["n"] == 4  # the folder task's 4 test images
    assert load_run(tmp_path / "run").rows[0]["model"] == f"resnet18:{weights.name}"


@pytest.mark.parametrize(
    ("model", "data", "words"),
    [
        ({"arch": "vgg", "weights": "w.safetensors"}, {}, "model.weights and model.classes"),
        ({"arch": "resnet7"}, {}, "unknown arch 'resnet7'"),
        ({"arch": "resnet18", "size": 32}, {"shift_folder": "c"}, "needs data.clean_folder"),
        ({"arch": "resnet18", "size": 32}, {"testbed": {"widths": [2], "epochs": [1]}},
         "not for a standard model"),
    ],
)  # fmt: skip
def test_study_config_mistakes_are_refused_before_the_run(
    tmp_path: Path, model: dict, data: dict, words: str
) -> None:
    from editrisk.engine import resolve, run_study

    raw = {"name": "bad", "family": "vision", "model": model, "data": {"n_images": 8, **data},
           "edit_sets": {"e": {"classes": [0, 1], "n_train": 2}}, "methods": ["rewrite"],
           "evaluation": {"corruptions": ["fog"], "severities": [1]}}  # fmt: skip
    with pytest.raises(EditriskError, match=words):
        run_study(resolve(raw), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_vision_evaluate_command_reads_the_folder_and_writes_rows(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from editrisk.cli import app
    from editrisk.engine import load_run

    classes = ["n00", "n01", "n02"]
    weights = tmp_path / "r18.pt"
    torch.save(_randomised(build("resnet18", n_classes=3, seed=2), 2).state_dict(), weights)
    (tmp_path / "classes.txt").write_text("\n".join(classes))
    _imagenet_c(tmp_path / "c")
    _write(tmp_path / "clean" / "n00" / "a.png", (5, 5, 5))
    args = ["vision", "evaluate", "resnet18", "--weights", str(weights), "--shifts",
            str(tmp_path / "c"), "--clean", str(tmp_path / "clean"), "--classes",
            str(tmp_path / "classes.txt"), "--size", "32",
            "--run-dir", str(tmp_path / "run")]  # fmt: skip
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    assert "reading images: 10/10 (100%)" in out.output and "predicting: 4/4" in out.output
    rows = {(r["corruption"], r["severity"]): r for r in load_run(tmp_path / "run").rows}
    clf = load_standard("resnet18", weights, classes)
    shift = load_shift_folder(tmp_path / "c", classes, 32, clean=tmp_path / "clean")
    want = shift.accuracies(shift.predictions(clf))
    assert {k: r["acc.top1"] for k, r in rows.items()} == pytest.approx(want)
    assert rows[("gaussian_noise", 2)]["n"] == 3 and rows[("clean", 0)]["n"] == 1
    assert f"output: {tmp_path / 'run'}" in out.output
    bad = CliRunner().invoke(app, [*args[:4], str(tmp_path / "classes.txt"), *args[5:]])
    assert bad.exit_code == 2 and "classes.txt" in bad.output  # a text file is no weights file
