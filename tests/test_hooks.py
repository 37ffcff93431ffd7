"""The hook utility: reads equal a plain forward, edits change outputs, hooks never leak."""

from __future__ import annotations

import pytest
import torch

from editrisk.hooks import Trace, add_to_output
from editrisk.models import ModelHandle


def _n_hooks(model: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_read_equals_plain_forward(tiny: ModelHandle) -> None:
    batch = tiny.encode(["The capital of France is Paris"])
    last = tiny.arch.layer_module(tiny.arch.n_layers - 1)
    norm = tiny.arch.name("final_norm")
    plain = tiny.model(**batch, output_hidden_states=True)
    with Trace(tiny.model, [last, norm], retain_input=True) as tr:
        traced = tiny.model(**batch)
    assert torch.equal(traced.logits, plain.logits)
    # The last block's output feeds the final norm.
    torch.testing.assert_close(tr[norm].input, tr[last].output)
    torch.testing.assert_close(tr[norm].output, plain.hidden_states[-1])


def test_added_vector_changes_output(tiny: ModelHandle) -> None:
    batch = tiny.encode(["The capital of France is"])
    mlp = tiny.arch.name("mlp", 1)
    base = tiny.model(**batch).logits
    with Trace(tiny.model, mlp) as tr:
        tiny.model(**batch)
    clean = tr[mlp].output
    vec = torch.randn(tiny.arch.hidden_size)
    with Trace(tiny.model, mlp, edit_output=add_to_output({mlp: vec})) as tr2:
        edited = tiny.model(**batch).logits
    torch.testing.assert_close(tr2[mlp].output, clean + vec)
    assert not torch.allclose(edited, base)
    assert torch.equal(tiny.model(**batch).logits, base)  # nothing left behind


def test_replace_input(tiny: ModelHandle) -> None:
    batch = tiny.encode(["Paris is a city"])
    down = tiny.arch.name("mlp_out", 0)
    with Trace(
        tiny.model,
        down,
        retain_input=True,
        retain_output=True,
        edit_input=lambda n, x: torch.zeros_like(x),
    ) as tr:
        tiny.model(**batch)
    assert torch.count_nonzero(tr[down].input) == 0
    module = tiny.model.get_submodule(down)
    bias = getattr(module, "bias", None)
    expected = (
        torch.zeros_like(tr[down].output) if bias is None else bias.expand_as(tr[down].output)
    )
    torch.testing.assert_close(tr[down].output, expected)


def test_stop_after_ends_forward_early(tiny: ModelHandle) -> None:
    batch = tiny.encode(["Paris is a city"])
    first = tiny.arch.name("mlp_out", 0)
    later = tiny.arch.name("mlp_out", tiny.arch.n_layers - 1)
    out = None
    with Trace(tiny.model, [first, later], retain_input=True, stop_after=first) as tr:
        out = tiny.model(**batch)
    assert out is None  # the forward pass never returned
    assert tr[first].input is not None
    assert tr[later].input is None
    assert _n_hooks(tiny.model) == 0


def test_hooks_removed_after_exception(tiny: ModelHandle) -> None:
    batch = tiny.encode(["Paris"])
    mlp = tiny.arch.name("mlp", 0)

    def boom(name: str, out: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"), Trace(tiny.model, mlp, edit_output=boom):
        tiny.model(**batch)
    assert _n_hooks(tiny.model) == 0
    with pytest.raises(KeyError), Trace(tiny.model, ["no.such.module"]):
        pass
    assert _n_hooks(tiny.model) == 0


def test_gradients_flow_when_not_detached(tiny: ModelHandle) -> None:
    batch = tiny.encode(["Paris is"])
    mlp = tiny.arch.name("mlp", 1)
    delta = torch.zeros(tiny.arch.hidden_size, requires_grad=True)
    with Trace(tiny.model, mlp, edit_output=lambda n, x: x + delta, detach=False):
        loss = tiny.model(**batch).logits.sum()
    loss.backward()
    assert delta.grad is not None and delta.grad.abs().sum() > 0
