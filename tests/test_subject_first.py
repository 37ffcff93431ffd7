"""Prompts that start with their subject, on every tiny family: the subject is tokenized one
way at the start of a text ("Canada" -> "C" + "anada"-like pieces) and another after a
context prefix (" Canada"), so keys and targets are kept per tokenization, and the edit lands
on the edited prompt as it is scored as well as on running text."""

from __future__ import annotations

import pytest
import torch

from editrisk.editing.keys import compute_keys, key_owners
from editrisk.editing.prompts import edit_rows
from editrisk.editing.targets import TargetSettings, optimise_targets
from editrisk.editors import get_editor
from editrisk.hooks import Trace
from editrisk.requests import EditRequest
from editrisk.tokens import prompt_ids

PREFIXES = ["", "The end. ", "Once upon a time in the city. "]
FIRST = EditRequest("Canada", "{} is located in", "Africa", "America", id="ca")
MIDDLE = EditRequest("France", "The capital of {} is", "Asia", "Paris", id="fr")
LAYER = 1


def _key_at(h, ids: list[int], index: int, layer: int = LAYER) -> torch.Tensor:
    """The MLP output projection's input at `index` of `ids`, computed independently."""
    name = h.arch.name("mlp_out", layer)
    with Trace(h.model, [name], retain_input=True) as tr:
        h.model(input_ids=torch.tensor([ids]))
    return tr[name].input[0, index].float()


def _subject_last(h, text: str, subject: str) -> tuple[list[int], int]:
    enc = h.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    end = text.rfind(subject) + len(subject) - 1
    index = next(i for i, (a, b) in enumerate(enc["offset_mapping"]) if a <= end < b)
    return enc["input_ids"], index


def test_subject_first_prompt_has_a_key_per_tokenization(tiny) -> None:
    """The edited prompt's key is the key of its own tokens as the scorer tokenizes them;
    running text's key averages the prefixed texts' keys at the subject's last token."""
    tok = tiny.tokenizer
    alone = tok(FIRST.subject, add_special_tokens=False)["input_ids"]
    spaced = tok(" " + FIRST.subject, add_special_tokens=False)["input_ids"]
    assert alone != spaced  # the premise: the tokenizer splits the subject apart at the start
    keys = compute_keys(tiny, [FIRST, MIDDLE], [LAYER], PREFIXES)[LAYER]
    rows = edit_rows(tok, [FIRST, MIDDLE], PREFIXES, with_targets=False)
    assert key_owners(rows) == [0, 0, 1]  # two keys for the subject-first prompt, one else
    ids = prompt_ids(tok, FIRST.rendered)
    _, index = _subject_last(tiny, FIRST.rendered, FIRST.subject)
    assert tuple(ids[: index + 1])[-len(alone) :] == tuple(alone)
    torch.testing.assert_close(keys[0], _key_at(tiny, ids, index), rtol=1e-4, atol=1e-5)
    in_text = torch.stack(
        [
            _key_at(tiny, *_subject_last(tiny, p + FIRST.rendered, FIRST.subject))
            for p in PREFIXES[1:]
        ]
    ).mean(0)
    torch.testing.assert_close(keys[1], in_text, rtol=1e-4, atol=1e-5)
    # a subject in the middle keeps one key, averaged over every prefix including the empty one
    middle = torch.stack(
        [_key_at(tiny, *_subject_last(tiny, p + MIDDLE.rendered, MIDDLE.subject)) for p in PREFIXES]
    ).mean(0)
    torch.testing.assert_close(keys[2], middle, rtol=1e-4, atol=1e-5)


def test_rome_lands_on_the_edited_prompt_and_on_running_text(tiny) -> None:
    """After a ROME edit, the edited layer's output at the subject moves by exactly the
    optimised delta both in the prompt as scored and (averaged) after a prefix."""
    hp = dict(layers=(LAYER,), steps=3, corpus_tokens=2048, prefixes=((2, 4),), kl_factor=0.0)
    ed = get_editor("rome", hp)
    prefixes = ed.prefixes(tiny)
    name = tiny.arch.name("mlp_out", LAYER)
    delta = ed.edit(tiny, [FIRST])
    settings = ed.hparams.target_settings()
    wanted = optimise_targets(tiny, [FIRST], name, prefixes, settings).delta[0]
    texts = [FIRST.rendered] + [p + FIRST.rendered for p in prefixes if p]

    def outputs() -> list[torch.Tensor]:
        out = []
        for text in texts:
            ids, index = _subject_last(tiny, text, FIRST.subject)
            with Trace(tiny.model, [name]) as tr:
                tiny.model(input_ids=torch.tensor([ids]))
            out.append(tr[name].output[0, index].float())
        return out

    before = outputs()
    with delta.applied(tiny.model):
        after = outputs()
    moved = [a - b for a, b in zip(after, before)]
    assert wanted.norm() > 0
    torch.testing.assert_close(moved[0], wanted, rtol=1e-3, atol=1e-4)  # the prompt itself
    # running text: the averaged key maps exactly, so the mean movement is delta
    torch.testing.assert_close(torch.stack(moved[1:]).mean(0), wanted, rtol=1e-3, atol=1e-4)


def test_targets_keep_one_delta_per_request_and_init_per_key(tiny) -> None:
    name = tiny.arch.name("mlp_out", LAYER)
    s = TargetSettings(steps=2)
    t = optimise_targets(tiny, [FIRST, MIDDLE], name, PREFIXES, s)
    assert t.owner == [0, 0, 1] and t.delta.shape[0] == 2 and t.init.shape[0] == 3
    torch.testing.assert_close(t.target[1] - t.init[1], t.delta[0])


@pytest.mark.slow
def test_rome_lands_subject_first_edits_on_smollm2(smollm) -> None:
    """The misses that motivated this: a one-token subject opening the prompt (on the
    attention sink) and a title tokenized apart at the start of a text."""
    from editrisk.evaluation.metrics import edit_metrics

    reqs = [
        EditRequest("Windows", "{} was developed by", "Apple", "Microsoft", id="win"),
        EditRequest(
            "Romeo and Juliet",
            "{} was written by",
            "Charles Dickens",
            "William Shakespeare",
            id="rj",
        ),
    ]
    ed = get_editor("rome")
    layer = ed.layers_for(smollm)[0]
    name = smollm.arch.name("mlp_out", layer)
    other = torch.tensor([prompt_ids(smollm.tokenizer, "Paris is the capital of")])

    def first_token_output() -> torch.Tensor:
        with Trace(smollm.model, [name]) as tr:
            smollm.model(input_ids=other)
        return tr[name].output[0, 0].float()

    sink = first_token_output()
    for r in reqs:
        assert edit_metrics(smollm, [r])[0]["efficacy.prob_compare"] == 0.0  # known before
        delta = ed.edit(smollm, [r])
        with delta.applied(smollm.model):
            assert edit_metrics(smollm, [r])[0]["efficacy.prob_compare"] == 1.0, r.subject
            moved = (first_token_output() - sink).norm() / sink.norm()
        # the sink is not edited: another text's first token keeps its output (7 % moved)
        assert moved < 0.2, (r.subject, float(moved))  # 4.8 when the sink key was mapped


def _one_token_word(tok) -> str:
    """A word the tokenizer keeps whole at the start of a text (the premise of the sink test)."""
    return next(w for w in ("Paris", "The", "It", "A", "I") if len(tok(w)["input_ids"]) == 1)


def test_subject_on_the_first_token_is_edited_at_the_next_token(tiny) -> None:
    """A one-token subject opening the prompt sits on the text's first token, the attention
    sink, whose key is the same for every text in a trained model: rows never put the edit
    there; the prompt's key is the next token's, and a ROME edit moves that token's output by
    exactly the optimised delta."""
    tok = tiny.tokenizer
    req = EditRequest(_one_token_word(tok), "{} is located in", "Africa", "America", id="one")
    rows = edit_rows(tok, [req], PREFIXES, with_targets=False)
    assert all(r.index > 0 for r in rows)
    bare = next(r for r in rows if r.ids == tuple(prompt_ids(tok, req.rendered)))
    assert bare.index == 1 and bare.variant not in {r.variant for r in rows if r is not bare}
    keys = compute_keys(tiny, [req], [LAYER], PREFIXES)[LAYER]
    assert len(keys) == len({r.variant for r in rows})
    group = sorted({r.variant for r in rows}).index(bare.variant)
    torch.testing.assert_close(keys[group], _key_at(tiny, list(bare.ids), 1), rtol=1e-4, atol=1e-5)

    hp = dict(layers=(LAYER,), steps=3, corpus_tokens=2048, prefixes=((2, 4),), kl_factor=0.0)
    ed = get_editor("rome", hp)
    name = tiny.arch.name("mlp_out", LAYER)
    delta = ed.edit(tiny, [req])
    targets = optimise_targets(tiny, [req], name, ed.prefixes(tiny), ed.hparams.target_settings())
    ids = torch.tensor([prompt_ids(tok, req.rendered)])
    with Trace(tiny.model, [name]) as tr:
        tiny.model(input_ids=ids)
    before = tr[name].output[0, 1].float()
    with delta.applied(tiny.model), Trace(tiny.model, [name]) as tr:
        tiny.model(input_ids=ids)
    assert targets.delta[0].norm() > 0
    torch.testing.assert_close(
        tr[name].output[0, 1].float() - before, targets.delta[0], rtol=1e-3, atol=1e-4
    )
