"""Distribution shifts for language: prompt perturbations at graded severities, accuracy of
knowledge under each shift, and relative / effective robustness (Taori et al. 2020).

Perturbations (severity 1..5; 0 is the clean prompt), deterministic per seed and prompt, and
nested: severity s+1 applies the edits of severity s plus more, so edit distance from the
clean prompt grows with severity.

- `typo`: character substitutions, deletions and duplications at letter positions.
- `case`: flipped letter case.
- `noise`: extra whitespace and punctuation at word boundaries.
- `paraphrase`: the request's s-th paraphrase ordered by edit distance (clean when none).
- `prefix`: s distracting sentences before the prompt.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from editrisk.errors import EditriskError
from editrisk.evaluation.metrics import score_pairs
from editrisk.evaluation.robustness import fit_logit_linear
from editrisk.models import ModelHandle
from editrisk.requests import EditRequest

PERTURBATIONS = ("typo", "case", "noise", "paraphrase", "prefix")
SEVERITIES = (1, 2, 3, 4, 5)

# Fraction of eligible positions edited at severities 1..5 (at least `severity` of them).
_FRACTION = {
    "typo": (0.04, 0.08, 0.12, 0.18, 0.25),
    "case": (0.1, 0.2, 0.35, 0.5, 0.7),
    "noise": (0.15, 0.3, 0.45, 0.6, 0.8),
}
_NOISE = (" ", "  ", ",", ";", " -", "...", " ,")
_KEYBOARD = "qwertyuiopasdfghjklzxcvbnm"
DISTRACTORS = (
    "The weather was mild for most of the week.",
    "Some people prefer tea to coffee in the morning.",
    "A new bridge opened to traffic last spring.",
    "The museum extends its opening hours on Fridays.",
    "Many trains were delayed because of the snow.",
)


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions)."""
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def _count(kind: str, severity: int, n: int) -> int:
    return min(n, max(severity, math.ceil(_FRACTION[kind][severity - 1] * n)))


def _typo(text: str, severity: int, rng: random.Random) -> str:
    positions = [i for i, c in enumerate(text) if c.isalpha()]
    rng.shuffle(positions)
    ops = {}
    for i in positions:  # decide every position's edit up front, so severities nest
        op = rng.choice(("sub", "del", "dup"))
        sub = rng.choice([k for k in _KEYBOARD if k != text[i].lower()])
        ops[i] = (op, sub.upper() if text[i].isupper() else sub)
    chosen = set(positions[: _count("typo", severity, len(positions))])
    out = []
    for i, c in enumerate(text):
        op, sub = ops.get(i, ("keep", ""))
        if i not in chosen or op == "keep":
            out.append(c)
        elif op == "sub":
            out.append(sub)
        elif op == "dup":
            out.append(c + c)
    return "".join(out)


def _case(text: str, severity: int, rng: random.Random) -> str:
    positions = [i for i, c in enumerate(text) if c.lower() != c.upper()]
    rng.shuffle(positions)
    chosen = set(positions[: _count("case", severity, len(positions))])
    return "".join(c.swapcase() if i in chosen else c for i, c in enumerate(text))


def _noise(text: str, severity: int, rng: random.Random) -> str:
    gaps = [i for i, c in enumerate(text) if c == " "]
    inserts = {i: rng.choice(_NOISE) for i in gaps}
    rng.shuffle(gaps)
    chosen = set(gaps[: _count("noise", severity, len(gaps))])
    return "".join(inserts[i] + c if i in chosen else c for i, c in enumerate(text))


def _paraphrase(text: str, severity: int, paraphrases: Sequence[str]) -> str:
    ranked = sorted(dict.fromkeys(paraphrases), key=lambda p: (edit_distance(text, p), p))
    return ranked[min(severity, len(ranked)) - 1] if ranked else text


def _prefix(text: str, severity: int, rng: random.Random) -> str:
    order = list(DISTRACTORS)
    rng.shuffle(order)
    return " ".join(order[: min(severity, len(order))]) + " " + text


def check_kinds(kinds: Sequence[str]) -> list[str]:
    """`kinds` as a list, refusing an unknown perturbation by name (before any work is done)."""
    unknown = [k for k in kinds if k not in PERTURBATIONS]
    if unknown:
        raise EditriskError(f"unknown perturbation(s) {unknown}; choose from {PERTURBATIONS}")
    return list(kinds)


def perturb(
    text: str, kind: str, severity: int, seed: int = 0, paraphrases: Sequence[str] = ()
) -> str:
    """`text` under shift `kind` at `severity` (0 = unchanged); same seed, same output."""
    if kind not in PERTURBATIONS:
        raise EditriskError(f"unknown perturbation {kind!r}; choose from {PERTURBATIONS}")
    if not 0 <= severity <= len(SEVERITIES):
        raise EditriskError(f"severity must be 0..{len(SEVERITIES)}, got {severity}")
    if severity == 0:
        return text
    if kind == "paraphrase":
        return _paraphrase(text, severity, paraphrases)
    rng = random.Random(f"{seed}:{kind}:{text}")
    return {"typo": _typo, "case": _case, "noise": _noise, "prefix": _prefix}[kind](
        text, severity, rng
    )


def shift_table(
    h: ModelHandle,
    requests: Sequence[EditRequest],
    kinds: Sequence[str] = PERTURBATIONS,
    severities: Sequence[int] = SEVERITIES,
    seed: int = 0,
    wanted: str = "true",
    batch_size: int = 32,
) -> list[dict[str, float | int | str | None]]:
    """Accuracy on perturbed main prompts, one row per (shift, severity), clean row first.

    `wanted='true'` measures knowledge (target_true over target_new, label `knowledge`);
    `wanted='new'` measures the robustness of the edit itself (target_new over target_true,
    label `edit`). Conventions as in `editrisk.evaluation.metrics`.
    """
    if wanted not in ("true", "new"):
        raise EditriskError("wanted must be 'true' or 'new'")
    kinds = check_kinds(kinds)  # also when no request has a true target to perturb
    label = "knowledge" if wanted == "true" else "edit"
    reqs = [r for r in requests if r.target_true is not None]
    cells = [("clean", 0)] + [(k, s) for k in kinds for s in severities]
    prompts = {
        (k, s): [perturb(r.rendered, k, s, seed, r.paraphrases) if s else r.rendered for r in reqs]
        for k, s in cells
    }
    pairs = []
    for k, s in cells:
        for r, p in zip(reqs, prompts[(k, s)]):
            pairs += [(p, r.target_true), (p, r.target_new)]
    scores = iter(score_pairs(h, pairs, batch_size))
    rows: list[dict[str, float | int | str | None]] = []
    for k, s in cells:
        hits, accs, dists = [], [], []
        for r, p in zip(reqs, prompts[(k, s)]):
            true, new = next(scores), next(scores)
            good, bad = (true, new) if wanted == "true" else (new, true)
            hits.append(float(good.prob > bad.prob))
            accs.append(good.token_accuracy)
            dists.append(edit_distance(r.rendered, p))
        n = len(reqs)
        rows.append(
            {
                "shift": k,
                "severity": s,
                f"{label}.prob_compare": sum(hits) / n if n else None,
                f"{label}.token_acc": sum(accs) / n if n else None,
                "mean_edit_distance": sum(dists) / n if n else None,
                "n": n,
            }
        )
    return rows


def relative_robustness(
    edited: Sequence[dict], unedited: Sequence[dict], key: str
) -> list[dict[str, float | int | str | None]]:
    """Per (shift, severity): shifted accuracy of the edited model minus the unedited one."""
    base = {(r["shift"], r["severity"]): r[key] for r in unedited}
    out = []
    for r in edited:
        b = base.get((r["shift"], r["severity"]))
        rel = None if b is None or r[key] is None else r[key] - b
        out.append({"shift": r["shift"], "severity": r["severity"], f"relative.{key}": rel})
    return out


def logit_fit(testbed: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """Least-squares line logit(shifted) = a * logit(clean) + b over (clean, shifted) points."""
    if len(testbed) < 2:
        raise EditriskError("effective robustness needs a testbed of at least 2 models")
    fit = fit_logit_linear([c for c, _ in testbed], [s for _, s in testbed])
    return fit.slope, fit.intercept


def effective_robustness(
    clean: float, shifted: float, testbed: Sequence[tuple[float, float]]
) -> float:
    """Shifted accuracy above what the testbed's logit-linear fit predicts from clean accuracy."""
    logit_fit(testbed)  # the size check and its message
    return fit_logit_linear([c for c, _ in testbed], [s for _, s in testbed]).effective_robustness(
        clean, shifted
    )
