"""`editrisk vision ...`: corruption previews and the vision study from a YAML config."""

from __future__ import annotations

from pathlib import Path

import typer

from editrisk.cli._common import (
    cli_errors,
    console,
    fmt,
    next_steps,
    q,
    run_with_progress,
    set_threads,
    table,
)
from editrisk.errors import EditriskError, InputError

vision_app = typer.Typer(
    help="Image classifiers: corruptions, edits, robustness study.", no_args_is_help=True
)


def save_grid(rows: list[list[object]], path: Path, scale: int = 4) -> Path:
    """Write a grid of (3, H, W) tensors in [0, 1] as a PNG."""
    import numpy as np
    import torch
    from PIL import Image

    tiles = [torch.cat([t for t in row], 2) for row in rows]  # type: ignore[misc]
    grid = torch.cat(tiles, 1).clamp(0, 1)
    arr = (grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    img = Image.fromarray(arr).resize((arr.shape[1] * scale, arr.shape[0] * scale), Image.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


@vision_app.command("corrupt")
@cli_errors
def corrupt_cmd(
    out: Path = typer.Option(Path("corruptions.png"), "--out", "-o", help="PNG to write"),
    image: Path | None = typer.Option(None, help="an image file (default: a digit)"),
    size: int = typer.Option(32, min=8, help="image side in pixels"),
    corruptions: str = typer.Option("all", help="comma-separated names, or all"),
    seed: int = typer.Option(0, help="random seed of the corruptions"),
) -> None:
    """Preview every corruption at severities 1-5 as an image grid (rows: corruptions)."""
    from editrisk.vision.corruptions import CORRUPTIONS, SEVERITIES, corrupt
    from editrisk.vision.data import load_digits, read_image

    names = list(CORRUPTIONS) if corruptions == "all" else corruptions.split(",")
    unknown = [n for n in names if n not in CORRUPTIONS]
    if unknown:
        raise EditriskError(
            f"unknown corruption(s) {unknown}; choose from {', '.join(CORRUPTIONS)}"
        )
    x = (read_image(image, size) if image else load_digits("test", size=size).images[0])[None]
    rows = [[x[0], *(corrupt(x, n, s, seed)[0] for s in SEVERITIES)] for n in names]
    save_grid(rows, out)
    console.print(f"wrote {out} ({len(names)} corruptions x clean + 5 severities)")
    next_steps(out, "editrisk vision study examples/vision_study_vgg.yaml")


@vision_app.command("study")
@cli_errors
def study_cmd(
    config: Path,
    out: Path = typer.Option(None, "--out", "-o", help="run directory (default runs/<name>)"),
    threads: int = typer.Option(0, min=0, help="torch threads (0: the free cores)"),
) -> None:
    """`editrisk run` of a vision study CONFIG (family: vision), then its HTML report."""
    from editrisk.engine import load_config
    from editrisk.report import write_report

    cfg = load_config(config)
    if cfg.family != "vision":
        raise InputError(f"family is {cfg.family!r}; use `editrisk run`", file=str(config))
    set_threads(threads)
    rd = run_with_progress(cfg, out or Path("runs") / cfg.name)
    console.print(f"{len(rd.results)} rows in {rd.results.path}")
    next_steps(write_report(rd.path), f"editrisk analyze {q(rd.path)}")


@vision_app.command("report")
@cli_errors
def report_cmd(run: Path) -> None:
    """The HTML report of a vision study run directory (as `editrisk report`)."""
    from editrisk.report import write_report

    next_steps(write_report(run), f"editrisk analyze {q(run)}")


@vision_app.command("models")
def models_cmd() -> None:
    """Standard ImageNet models in torchvision's parameter layout (weights: your own file)."""
    from editrisk.vision.zoo import STANDARD_MODELS, editable_layers, n_parameters

    tab = table("name", "parameters", "editable layers", "first .. last",
                title="standard models (model.arch in a vision study)")  # fmt: skip
    for name in STANDARD_MODELS:
        layers = editable_layers(name)
        n = f"{n_parameters(name):,}"
        tab.add_row(name, n, str(len(layers)), f"{layers[0]} .. {layers[-1]}")
    console.print(tab)
    next_steps(None, "editrisk vision evaluate vgg16 --weights vgg16.safetensors --shifts "
               "IMAGENET_C --clean VAL_FOLDER --limit-per-class 5")  # fmt: skip


@vision_app.command("evaluate")
@cli_errors
def evaluate_cmd(
    arch: str = typer.Argument(..., help="a standard model (see `editrisk vision models`)"),
    weights: Path = typer.Option(..., help="local weights: .safetensors, or a torch file"),
    shifts: Path = typer.Option(..., help="ImageNet-C layout: CORRUPTION/SEVERITY/CLASS/IMAGE"),
    clean: Path | None = typer.Option(None, help="clean images as CLASS/IMAGE"),
    classes: Path | None = typer.Option(
        None, help="class names in output order, one a line (default: sorted class folders)"
    ),
    size: int = typer.Option(224, min=8, help="shorter side resized, then centre-cropped"),
    limit_per_class: int = typer.Option(0, min=0, help="first N images per class (0: all)"),
    run_dir: Path | None = typer.Option(None, help="default: runs/vision-eval-<time>"),
    threads: int = typer.Option(0, min=0, help="torch threads (0: the free cores)"),
) -> None:
    """Top-1 accuracy of ARCH with WEIGHTS on every corruption and severity of a shift folder
    (and its clean images): a table, and one row per set in the run directory."""
    import time

    from editrisk.engine.store import RunDir
    from editrisk.progress import report_progress
    from editrisk.vision.metrics import shifted_accuracy
    from editrisk.vision.shiftfolder import load_shift_folder
    from editrisk.vision.sources import read_class_names
    from editrisk.vision.zoo import load_standard

    names = read_class_names(classes) if classes else None
    set_threads(threads)
    clf = load_standard(arch, weights, names)
    with report_progress(console) as progress:
        limit = limit_per_class or None
        shift = load_shift_folder(shifts, names, size, clean=clean, limit_per_class=limit,
                                  progress=progress)  # fmt: skip
        if not names and len(shift.classes) != len(clf.classes):
            console.print(
                f"note: {len(shift.classes)} class folders for {len(clf.classes)} outputs; "
                "give --classes to map folder names to outputs",
                markup=False,
            )
        preds = {}
        for i, (key, x) in enumerate(shift.sets.items()):
            progress("predicting", i, len(shift.sets))
            preds[key] = clf.predict(x)
        progress("predicting", len(shift.sets), len(shift.sets))
    acc = shift.accuracies(preds)
    sevs = sorted({s for c, s in acc if c != "clean"})
    tab = table("corruption", *map(str, sevs), "mean", title=f"{clf.name}: top-1 accuracy")
    if ("clean", 0) in acc:
        tab.add_row("clean", *("" for _ in sevs), fmt(acc[("clean", 0)]))
    for c in shift.corruptions:
        vals = [acc.get((c, s)) for s in sevs]
        mean = sum(v for v in vals if v is not None) / sum(v is not None for v in vals)
        tab.add_row(c, *(fmt(v) for v in vals), fmt(mean))
    tab.add_row("all corruptions", *("" for _ in sevs), fmt(shifted_accuracy(acc)))
    console.print(tab)
    run = RunDir(run_dir or Path("runs") / time.strftime("vision-eval-%Y%m%d-%H%M%S"))
    config = {"command": "vision evaluate", "arch": arch, "weights": str(weights),
              "shifts": str(shifts), "clean": str(clean) if clean else None,
              "classes": str(classes) if classes else None, "size": size,
              "limit_per_class": limit_per_class}  # fmt: skip
    with run.writer():
        run.start(config, {"name": clf.name, "family": "vision", "fingerprint": clf.fingerprint()})
        run.results.append([
            {"run": run.path.name, "kind": "accuracy", "model": clf.name, "corruption": c,
             "severity": s, "n": len(shift.labels_of[(c, s)]), "acc.top1": v, "key": f"{c}|{s}"}
            for (c, s), v in acc.items()
        ])  # fmt: skip
        run.export()
    next_steps(run.path, "editrisk vision study CONFIG  (model: {arch: "
               f"{arch}, weights: {weights}}}, data: {{shift_folder: {shifts}, ...}})")  # fmt: skip
