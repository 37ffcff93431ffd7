"""`editrisk vision ...`: corruption previews and the vision study from a YAML config."""

from __future__ import annotations

from pathlib import Path

import typer

from editrisk.cli._common import (
    cli_errors,
    console,
    next_steps,
    q,
    run_with_progress,
    set_threads,
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
