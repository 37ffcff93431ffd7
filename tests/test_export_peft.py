"""`editrisk export --peft`: an edit as a PEFT LoRA adapter that peft loads onto the base
model with the edited model's outputs (GPT-2's Conv1D layout and Linear families); exported
folders carry the edit record and a model card; a delta that is not low rank is refused
unless --rank truncates it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import editrisk
from editrisk import EditRequest
from editrisk.cli import app
from editrisk.delta import Delta, LowRank
from editrisk.errors import EditriskError
from editrisk.export import CARD, RECORD, export_peft, lora_factors
from editrisk.models import build_tiny, load_model

peft = pytest.importorskip("peft")

ROME = dict(layers=[1], steps=25, lr=1.0, weight_decay=0.0, kl_factor=0.0,
            clamp_norm_factor=50.0, corpus_tokens=2048, prefixes=[], stop_loss=0.01)  # fmt: skip
REQS = [
    EditRequest("Canada", "{} is located in", "Africa", "America", id="canada"),
    EditRequest("France", "The capital of {} is", "Rome", "Paris", id="france"),
]
TEXT = ["Canada is located in", "The capital of France is Paris. People in France pay"]
runner = CliRunner()


def _logits(model: torch.nn.Module, h) -> torch.Tensor:
    batch = h.tokenizer(TEXT, return_tensors="pt", padding=True)
    with torch.no_grad():
        return model(**batch).logits


def _peft_logits(name: str, folder: Path, h) -> torch.Tensor:
    base = build_tiny(name)  # the same seeded weights, loaded fresh
    model = peft.PeftModel.from_pretrained(base, str(folder)).eval()
    return _logits(model, h)


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-llama", "tiny-neox"])
@pytest.mark.parametrize("form", ["lowrank", "dense"])
def test_adapter_reproduces_the_edited_logits(name: str, form: str, tmp_path: Path) -> None:
    h = load_model(name, device="cpu")
    delta = editrisk.edit(h, "rome", REQS[0], ROME, check=False)
    if form == "dense":  # an exactly rank-one dense update: factored by SVD at rank one
        delta = delta.to_dense()
    res = export_peft(h, delta, tmp_path / "adapter")
    assert res.rank == 1 and res.truncated == {}
    with delta.applied(h.model):
        edited = _logits(h.model, h)
    base = _logits(h.model, h)
    got = _peft_logits(name, res.path, h)
    assert (edited - base).abs().max() > 1e-3  # the edit moves the logits
    torch.testing.assert_close(got, edited, atol=2e-4, rtol=1e-4)
    cfg = json.loads((res.path / "adapter_config.json").read_text())
    assert cfg["r"] == cfg["lora_alpha"] == 1 and cfg["fan_in_fan_out"] is (name == "tiny-gpt2")


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-llama"])
def test_memit_dense_update_exports_at_its_rank(name: str, tmp_path: Path) -> None:
    """MEMIT's dense update of three facts has rank three: SVD finds it, the adapter is exact."""
    h = load_model(name, device="cpu")
    reqs = [EditRequest(c, "The capital of {} is", t, "Paris", id=c)
            for c, t in (("France", "Rome"), ("Italy", "Tokyo"), ("Japan", "Berlin"))]  # fmt: skip
    delta = editrisk.edit(h, "memit", reqs, dict(layers=[1, 2]), check=False)
    assert not any(isinstance(u, LowRank) for u in delta.updates.values())
    res = export_peft(h, delta, tmp_path / "adapter")
    assert [f.exact_rank for f in res.factors] == [3, 3] and res.truncated == {}
    with delta.applied(h.model):
        edited = _logits(h.model, h)
    torch.testing.assert_close(_peft_logits(name, res.path, h), edited, atol=2e-4, rtol=1e-4)


def test_two_edits_of_different_rank_share_one_adapter(tmp_path: Path) -> None:
    """A rank-2 update (two edits added) and a rank-1 one on another layer: padded to r=2."""
    h = load_model("tiny-gpt2", device="cpu")
    a = editrisk.edit(h, "rome", REQS[0], ROME, check=False)
    b = editrisk.edit(h, "rome", REQS[1], ROME, check=False)
    c = editrisk.edit(h, "rome", REQS[1], dict(ROME, layers=[2]), check=False)
    (n1,), (n2,) = a.names, c.names
    ua, ub = a.updates[n1], b.updates[n1]
    two = LowRank(torch.cat([ua.left, ub.left], 1), torch.cat([ua.right, ub.right], 1))
    delta = Delta({n1: two, n2: c.updates[n2]})  # (Delta + Delta trips on list `layers`)
    assert sorted(u.rank for u in delta.updates.values()) == [1, 2]
    res = export_peft(h, delta, tmp_path / "adapter")
    assert res.rank == 2
    with delta.applied(h.model):
        edited = _logits(h.model, h)
    torch.testing.assert_close(_peft_logits("tiny-gpt2", res.path, h), edited,
                               atol=2e-4, rtol=1e-4)  # fmt: skip


def test_record_and_card_name_the_editor_and_requests(tmp_path: Path) -> None:
    h = load_model("tiny-llama", device="cpu")
    delta = editrisk.edit(h, "rome", REQS, ROME)  # checked: the record carries the check
    for peft_, folder in ((True, tmp_path / "adapter"), (False, tmp_path / "model")):
        editrisk.export_model(h, delta, folder, peft=peft_)
        record = json.loads((folder / RECORD).read_text())
        assert record["kind"] == ("peft-lora" if peft_ else "hf-model")
        assert record["editor"] == "rome" and record["hyperparameters"]["layers"] == [1]
        assert record["base_fingerprint"] == h.fingerprint()
        assert [r["target_new"] for r in record["requests"]] == ["Africa", "Rome"]
        assert [r["subject"] for r in record["requests"]] == ["Canada", "France"]
        assert len(record["check"]["requests"]) == 2
        card = (folder / CARD).read_text()
        assert card.startswith("---\nlibrary_name: " + ("peft" if peft_ else "transformers"))
        for word in ("rome edit of tiny-llama", "Canada is located in", "Africa",
                     "The capital of France is", "Rome", "editrisk eval"):  # fmt: skip
            assert word in card, word
    assert (tmp_path / "model" / "config.json").is_file()  # still a transformers folder


def test_a_full_rank_delta_is_refused_unless_truncated(tmp_path: Path) -> None:
    h = load_model("tiny-llama", device="cpu")
    name = h.arch.weight_name("mlp_out", 1)
    shape = dict(h.model.named_parameters())[name].shape
    full = torch.randn(shape, generator=torch.Generator().manual_seed(0)) * 1e-2
    delta = Delta({name: full}, {"editor": "test", "model_fingerprint": h.fingerprint()})
    with pytest.raises(EditriskError, match=r"rank 32 of 32.*--rank"):
        export_peft(h, delta, tmp_path / "refused")
    assert not (tmp_path / "refused").exists()
    res = export_peft(h, delta, tmp_path / "r4", rank=4)
    (err,) = res.truncated.values()
    s = torch.linalg.svdvals(full.double())
    assert err == pytest.approx(float(s[4:].norm() / s.norm()), rel=1e-5)
    (f,) = lora_factors(h, delta, rank=4)
    u, sv, vh = torch.linalg.svd(full.double())
    best = (u[:, :4] * sv[:4]) @ vh[:4]
    torch.testing.assert_close((f.B @ f.A).double(), best, atol=1e-6, rtol=1e-5)


def test_what_lora_cannot_carry_is_refused(tmp_path: Path) -> None:
    h = load_model("tiny-gpt2", device="cpu")
    bias = "transformer.h.1.mlp.c_proj.bias"
    with pytest.raises(EditriskError, match="Linear or Conv1D weights only.*bias"):
        export_peft(h, Delta({bias: torch.ones(32)}), tmp_path / "a")
    emb = "transformer.wte.weight"
    low = LowRank(torch.ones(512, 1), torch.ones(32, 1))
    with pytest.raises(EditriskError, match="Embedding"):
        export_peft(h, Delta({emb: low}), tmp_path / "b")
    assert not any(tmp_path.iterdir())


def test_cli_export_peft(tmp_path: Path) -> None:
    h = load_model("tiny-gpt2", device="cpu")
    d_file = editrisk.edit(h, "rome", REQS[0], ROME, check=False).save(tmp_path / "d.safetensors")
    reqs = tmp_path / "reqs.jsonl"
    reqs.write_text(json.dumps(REQS[0].to_dict()) + "\n")
    out = runner.invoke(app, ["export", "tiny-gpt2", "--delta", str(d_file), "--peft",
                              "--out", str(tmp_path / "a"), "--request", str(reqs)])  # fmt: skip
    assert out.exit_code == 0, out.output
    assert "rank 1" in out.output
    record = json.loads((tmp_path / "a" / RECORD).read_text())
    assert record["requests"][0]["subject"] == "Canada" and record["lora"]["r"] == 1
    with Delta.load(d_file).applied(h.model):
        edited = _logits(h.model, h)
    torch.testing.assert_close(_peft_logits("tiny-gpt2", tmp_path / "a", h), edited,
                               atol=2e-4, rtol=1e-4)  # fmt: skip


def test_cli_refuses_a_full_rank_delta_with_exit_2(tmp_path: Path) -> None:
    h = load_model("tiny-gpt2", device="cpu")
    name = h.arch.weight_name("mlp_out", 1)
    full = torch.randn(dict(h.model.named_parameters())[name].shape) * 1e-2
    d_file = Delta({name: full}, {"model_fingerprint": h.fingerprint()}).save(tmp_path / "f.st")
    base = ["export", "tiny-gpt2", "--delta", str(d_file)]
    out = runner.invoke(app, [*base, "--peft", "--out", str(tmp_path / "x")])
    assert out.exit_code == 2 and "--rank" in out.stderr and "f.st: " in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()
    out = runner.invoke(app, [*base, "--rank", "2", "--out", str(tmp_path / "y")])
    assert out.exit_code == 2 and "add --peft" in out.stderr
    out = runner.invoke(app, [*base, "--peft", "--rank", "2", "--out", str(tmp_path / "z")])
    assert out.exit_code == 0 and "relative error" in out.output
