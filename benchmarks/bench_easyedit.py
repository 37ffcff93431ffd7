"""editrisk's ROME against EasyEdit's on the same requests, weights and covariance.

EasyEdit's ROME is run from its published wheel, not installed (its pinned dependencies --
torch 2.0, transformers 4.30 -- would replace the ones editrisk runs on): get it with

    pip download easyeditor==0.0.1.dev0 --no-deps -d /tmp/ee

and pass the wheel with --wheel. Only its ROME files and the helpers they import are loaded,
unchanged but for the hard-coded CUDA device (`"cuda:{hparams.device}"` -> "cpu"). Both
editors get the same covariance (editrisk's statistic for the layer, the same tokens) and
context prefixes from the same sampler (EasyEdit's count: 20 plus the bare prompt; editrisk
its default 10 plus the bare prompt). Both edits are scored by one scorer, editrisk's
`edit_metrics` (ROME/MEMIT probability comparison), each on the unedited model.

Requests: known facts, 5 capitals (WorldFacts) and 5 products' developers
(`editrisk.data.morefacts`, the companies), plus "Romeo and Juliet" -> "Charles Dickens"
(a title that opens its prompt, a miss in the comparison that motivated this).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time
import zipfile
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

sys.path.insert(0, os.path.dirname(__file__))

import torch  # noqa: E402
from common import report, setup_threads  # noqa: E402

from editrisk.data.morefacts import build_morefacts  # noqa: E402
from editrisk.data.splits import by_relation  # noqa: E402
from editrisk.data.worldfacts import build_worldfacts  # noqa: E402
from editrisk.delta import Delta, LowRank  # noqa: E402
from editrisk.editing.context import context_prefixes  # noqa: E402
from editrisk.editors import get_editor  # noqa: E402
from editrisk.evaluation.metrics import edit_metrics, summarize  # noqa: E402
from editrisk.models import ModelHandle, load_model  # noqa: E402
from editrisk.requests import EditRequest  # noqa: E402

# EasyEdit's files needed by its ROME; package __init__ files are written empty (EasyEdit's
# import every editor and dataset), and layer_stats is replaced (the covariance is given).
FILES = (
    "easyeditor/util/nethook.py",
    "easyeditor/util/generate.py",
    "easyeditor/util/logit_lens.py",
    "easyeditor/util/hparams.py",
    "easyeditor/util/globals.py",
    "easyeditor/util/runningstats.py",
    "easyeditor/models/rome/__init__.py",
    "easyeditor/models/rome/rome_main.py",
    "easyeditor/models/rome/compute_u.py",
    "easyeditor/models/rome/compute_v.py",
    "easyeditor/models/rome/repr_tools.py",
    "easyeditor/models/rome/rome_hparams.py",
)


def load_easyedit_rome(wheel: Path, root: Path) -> ModuleType:
    """EasyEdit's `rome_main` module from `wheel`, extracted under `root`."""
    with zipfile.ZipFile(wheel) as z:
        for name in FILES:
            text = z.read(name).decode()
            text = text.replace('f"cuda:{hparams.device}"', '"cpu"')
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(text)
    for pkg in ("easyeditor", "easyeditor/util", "easyeditor/models"):
        (root / pkg / "__init__.py").write_text("")
    (root / "easyeditor/models/rome/layer_stats.py").write_text(
        "def layer_stats(*args, **kwargs):\n    raise RuntimeError('covariance is given')\n"
    )
    sys.path.insert(0, str(root))
    import easyeditor.models.rome.rome_main as rome_main

    return rome_main


def easyedit_hparams(rome_main: ModuleType, h: ModelHandle, layer: int) -> Any:
    """ROME's published settings (EasyEdit's llama config) for smollm2 at `layer`."""
    mlp_out = h.arch.name("mlp_out", layer)
    block = mlp_out.rsplit(".mlp.", 1)[0]
    return rome_main.ROMEHyperParams(
        layers=[layer],
        fact_token="subject_last",
        v_num_grad_steps=20,
        v_lr=0.5,
        v_loss_layer=h.arch.n_layers - 1,
        v_weight_decay=0.5,
        clamp_norm_factor=4,
        kl_factor=0.0625,
        mom2_adjustment=True,
        context_template_length_params=[[5, 10], [10, 10]],
        rewrite_module_tmp=mlp_out.replace(f".{layer}.", ".{}."),
        layer_module_tmp=block.replace(f".{layer}", ".{}"),
        mlp_module_tmp=mlp_out.rsplit(".", 1)[0].replace(f".{layer}.", ".{}."),
        attn_module_tmp=block.replace(f".{layer}", ".{}") + ".self_attn",
        ln_f_module="model.norm",
        lm_head_module="lm_head",
        mom2_dataset="given",
        mom2_n_samples=0,
        mom2_dtype="float32",
        alg_name="ROME",
        device=0,
        model_name="smollm2-135m",
        stats_dir="",
    )


def requests_for(h: ModelHandle, seed: int) -> list[EditRequest]:
    capitals = by_relation(build_worldfacts(h, seed=seed, relations=["capital"]))["capital"]
    more = by_relation(build_morefacts(h, seed=seed, relations=["developer", "author"]))
    romeo = [r for r in more["author"] if r.subject == "Romeo and Juliet"]
    romeo = [replace(r, target_new="Charles Dickens") for r in romeo]
    return capitals[:5] + more["developer"][:5] + romeo


def scores(h: ModelHandle, delta: Delta, r: EditRequest) -> dict[str, float]:
    with delta.applied(h.model):
        s = summarize(edit_metrics(h, [r]))
    return {
        "efficacy": s["efficacy.prob_compare"],
        "paraphrase": s["generalization.prob_compare"],
        "neighbours": s["specificity.prob_compare"],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--wheel", type=Path, required=True, help="easyeditor-0.0.1.dev0 wheel")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    setup_threads()
    h = load_model("smollm2-135m", device="cpu")
    reqs = requests_for(h, args.seed)
    ours = get_editor("rome")
    (layer,) = ours.layers_for(h)
    ours.edit(h, reqs[:1])  # warm the covariance and prefix caches outside the timing
    cov = ours.covariances(h, (layer,))[layer]
    cov = cov + ours.hparams.cov_ridge * cov.diagonal().mean() * torch.eye(cov.shape[0]).to(cov)

    tmp = tempfile.TemporaryDirectory()
    rome_main = load_easyedit_rome(args.wheel, Path(tmp.name))
    inverse = torch.linalg.inv(cov).float()
    sys.modules["easyeditor.models.rome.compute_u"].get_inv_cov = lambda *a, **k: inverse
    prefixes = context_prefixes(h, ((10, 5), (10, 10)), seed=args.seed)
    rome_main.CONTEXT_TEMPLATES_CACHE = ["{}"] + [p + "{}" for p in prefixes if p]
    hp = easyedit_hparams(rome_main, h, layer)
    tok = h.tokenizer
    tok.padding_side = "right"  # compute_v places targets at the end of each row
    weight = h.arch.weight_name("mlp_out", layer)

    def easyedit(r: EditRequest) -> tuple[Delta, int]:
        request = {"prompt": r.prompt, "subject": r.subject, "target_new": r.target_new}
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            deltas = rome_main.execute_rome(h.model, tok, request, hp)
        (u, v) = deltas[next(iter(deltas))]
        passes = sum(line.startswith("loss ") for line in out.getvalue().splitlines())
        upd = LowRank(v.detach().float()[:, None], u.detach().float()[:, None])
        return Delta({weight: upd}), passes - 1

    easyedit(reqs[0])  # warm-up, as for editrisk
    rows, totals = [], {"editrisk": [], "easyedit": []}
    for r in reqs:
        t = time.perf_counter()
        d_ours = ours.edit(h, [r])
        t_ours = time.perf_counter() - t
        t = time.perf_counter()
        d_ee, ee_steps = easyedit(r)
        t_ee = time.perf_counter() - t
        s_ours, s_ee = scores(h, d_ours, r), scores(h, d_ee, r)
        ours_steps = d_ours.metadata["target_steps"][0]
        totals["editrisk"].append({**s_ours, "s": t_ours, "steps": ours_steps})
        totals["easyedit"].append({**s_ee, "s": t_ee, "steps": ee_steps})
        rows.append(
            {
                "request": f"{r.subject} -> {r.target_new}",
                "editrisk eff/para/nbr": "/".join(f"{s_ours[k]:.2f}" for k in s_ours),
                "easyedit eff/para/nbr": "/".join(f"{s_ee[k]:.2f}" for k in s_ee),
                "editrisk s": t_ours,
                "easyedit s": t_ee,
                "steps editrisk/easyedit": f"{ours_steps}/{ee_steps}",
            }
        )
        print(rows[-1], flush=True)
    summary = []
    for name, items in totals.items():
        n = len(items)
        summary.append(
            {
                "editor": f"{name} rome (layer {layer})",
                "efficacy": sum(i["efficacy"] for i in items) / n,
                "paraphrase": sum(i["paraphrase"] for i in items) / n,
                "neighbours": sum(i["neighbours"] for i in items) / n,
                "optimiser updates": sum(i["steps"] for i in items) / n,
                "s/edit": sum(i["s"] for i in items) / n,
            }
        )
    summary[0]["speed-up"] = summary[1]["s/edit"] / summary[0]["s/edit"]
    report("easyedit_rome_requests", rows)
    report(
        "easyedit_rome",
        summary,
        note=f"{len(reqs)} single edits each on the unedited model, {torch.get_num_threads()} "
        "threads; the same covariance and prefix sampler; one scorer.",
    )
    tmp.cleanup()


if __name__ == "__main__":
    main()
