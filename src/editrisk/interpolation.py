"""1-layer interpolation (1-LI, Brown et al. 2023): keep one layer's change and scale it,
W(alpha) = W0 + alpha (W_edit - W0), to trade edit success against general robustness.

`trade_off` evaluates any edit (language or vision) along every path -- each layer alone and,
for multi-layer edits, all layers together -- at every alpha. The unedited model is evaluated
once (alpha = 0 is the same point on every path). Selection policies pick an alpha and say
why; `monotonicity_violations` checks the monotone-linear-interpolation property.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from editrisk.delta import Delta
from editrisk.errors import EditriskError

Evaluate = Callable[[nn.Module], dict[str, float]]
DEFAULT_ALPHAS = tuple(i / 10 for i in range(11))


def path_label(delta: Delta) -> str:
    """'layer L' when `delta` edits one layer, else 'all layers'."""
    layers = delta.layers
    one = len(layers) == 1 and len(delta.restrict(layers=layers)) == len(delta)
    return f"layer {layers[0]}" if one else "all layers"


def paths(delta: Delta, each: bool = True) -> dict[str, Delta]:
    """The 1-LI paths of an edit: the whole edit (labelled by `path_label`) and, with `each`,
    every edited layer alone. Layers are the architecture table's (`Delta.layer`)."""
    out = {path_label(delta): delta}
    if each and out.get("all layers") is not None:
        out = {f"layer {ly}": delta.restrict(layers=[ly]) for ly in delta.layers} | out
    return out


def points(
    delta: Delta, alphas: Sequence[float], each: bool = True
) -> Iterator[tuple[str, float, Delta]]:
    """The one 1-LI loop: (path, alpha, the scaled edit) for every path of `delta` and every
    alpha > 0 (alpha 0 is the unedited model, the same point on every path); alpha 1 of the
    whole edit is `delta` itself."""
    for name, part in paths(delta, each).items():
        for alpha in sorted({float(a) for a in alphas if a > 0}):
            yield name, alpha, part if (part is delta and alpha == 1.0) else part.scale(alpha)


def interpolate(delta: Delta, alpha: float, layer: int | str | None = None) -> Delta:
    """The 1-LI delta: `delta` restricted to `layer` (all layers if None), scaled by alpha.

    `layer` is a layer index (language models) or a module path (e.g. a classifier's
    "blocks.3.conv"), whose parameters are kept."""
    if not 0.0 <= alpha <= 1.0:
        raise EditriskError(f"alpha must be in [0, 1], got {alpha}")
    if layer is None:
        part = delta
    elif isinstance(layer, str):
        part = delta.restrict(params=[n for n in delta.names if n.startswith(layer + ".")])
    else:
        part = delta.restrict(layers=[layer])
    if not len(part):
        raise EditriskError(f"the delta does not edit layer {layer}; it edits {delta.layers}")
    return part.scale(alpha)


def trade_off(
    model: nn.Module,
    delta: Delta,
    evaluate: Evaluate,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    only: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Rows {path, alpha, **metrics} for every path and alpha; the model is left unchanged."""
    chosen = paths(delta)
    missing = set(only or ()) - set(chosen)
    if missing:
        raise EditriskError(f"unknown path(s) {sorted(missing)}; have {sorted(chosen)}")
    rows = []
    if 0.0 in alphas:
        base = evaluate(model)
        rows = [{"path": name, "alpha": 0.0, **base} for name in chosen]
    for name, alpha, scaled in points(delta, alphas):
        if only is None or name in only:
            with scaled.applied(model):
                rows.append({"path": name, "alpha": alpha, **evaluate(model)})
    return sorted(rows, key=lambda r: (list(chosen).index(r["path"]), r["alpha"]))


def monotonicity_violations(
    rows: Sequence[dict[str, Any]], metric: str, tol: float = 1e-6
) -> list[dict[str, Any]]:
    """Steps along each path where `metric` moves against the path's overall direction."""
    out = []
    for path in dict.fromkeys(r["path"] for r in rows):
        pts = sorted((r["alpha"], r[metric]) for r in rows if r["path"] == path)
        if len(pts) < 2:
            continue
        sign = 1.0 if pts[-1][1] >= pts[0][1] else -1.0
        for (a0, v0), (a1, v1) in zip(pts, pts[1:]):
            if sign * (v1 - v0) < -tol:
                out.append(
                    {
                        "path": path,
                        "metric": metric,
                        "from_alpha": a0,
                        "to_alpha": a1,
                        "change": v1 - v0,
                    }
                )
    return out


@dataclass(frozen=True)
class Choice:
    """A selected alpha with the policy that chose it and why."""

    path: str
    alpha: float
    policy: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "alpha": self.alpha,
            "policy": self.policy,
            "reason": self.reason,
        }


def _path_rows(rows: Sequence[dict[str, Any]], path: str) -> list[dict[str, Any]]:
    pts = sorted((r for r in rows if r["path"] == path), key=lambda r: r["alpha"])
    if not pts:
        raise EditriskError(f"no rows for path '{path}'")
    return pts


def select_threshold(
    rows: Sequence[dict[str, Any]], path: str, edit: str, robust: str, threshold: float
) -> Choice:
    """Largest robustness among alphas whose edit success >= threshold (smallest alpha on ties)."""
    ok = [r for r in _path_rows(rows, path) if r[edit] >= threshold]
    if not ok:
        best = max(_path_rows(rows, path), key=lambda r: r[edit])
        return Choice(
            path,
            best["alpha"],
            "threshold",
            f"no alpha reaches {edit} >= {threshold}; best {edit} "
            f"{best[edit]:.3f} at alpha {best['alpha']}",
        )
    pick = max(ok, key=lambda r: (r[robust], -r["alpha"]))
    return Choice(
        path,
        pick["alpha"],
        "threshold",
        f"max {robust} ({pick[robust]:.3f}) with {edit} >= {threshold}",
    )


def select_knee(rows: Sequence[dict[str, Any]], path: str, edit: str, robust: str) -> Choice:
    """The knee of the (robustness, edit success) curve: the point farthest from the chord
    between its ends, with both axes scaled to [0, 1]."""
    pts = _path_rows(rows, path)
    xs = [r[robust] for r in pts]
    ys = [r[edit] for r in pts]

    def scale(v: list[float]) -> list[float]:
        lo, hi = min(v), max(v)
        return [(x - lo) / (hi - lo) if hi > lo else 0.0 for x in v]

    x, y = scale(xs), scale(ys)
    (x0, y0), (x1, y1) = (x[0], y[0]), (x[-1], y[-1])
    norm = ((x1 - x0) ** 2 + (y1 - y0) ** 2) ** 0.5 or 1.0
    dist = [abs((y1 - y0) * xi - (x1 - x0) * yi + x1 * y0 - y1 * x0) / norm for xi, yi in zip(x, y)]
    i = max(range(len(pts)), key=dist.__getitem__)
    return Choice(
        path, pts[i]["alpha"], "knee", f"farthest from the chord ({dist[i]:.3f} in scaled units)"
    )


def select_validation(
    rows: Sequence[dict[str, Any]], path: str, val_edit: str, threshold: float
) -> Choice:
    """Smallest alpha whose edit success on held-out edit data reaches `threshold`: the
    least change that still generalises."""
    for r in _path_rows(rows, path):
        if r[val_edit] >= threshold:
            return Choice(
                path, r["alpha"], "validation", f"smallest alpha with {val_edit} >= {threshold}"
            )
    last = _path_rows(rows, path)[-1]
    return Choice(
        path,
        last["alpha"],
        "validation",
        f"no alpha reaches {val_edit} >= {threshold}; using the largest",
    )
