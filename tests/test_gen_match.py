"""The generation-based convention: the matcher on hand-written cases, greedy batched
generation against one prompt at a time, and gen_match through an edit forced by a known delta."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from editrisk.cli import app
from editrisk.data.jsonl import write_jsonl
from editrisk.delta import Delta
from editrisk.engine.config import resolve
from editrisk.engine.store import RunDir
from editrisk.errors import InputError
from editrisk.evaluation.metrics import (
    Sampling,
    edit_generations,
    edit_metrics,
    first_sentence,
    gen_match,
    greedy_continuations,
    states,
)
from editrisk.families.language import LanguageFamily
from editrisk.requests import QUESTION_KINDS, EditRequest, Neighbour, Question

runner = CliRunner()


@pytest.mark.parametrize(
    ("text", "wanted", "unwanted", "verdict"),
    [
        (" Rome. It is old.", "Rome", "Paris", True),
        (" rome!", "Rome", None, True),  # case and punctuation
        (" the USA, of course.", ["United States", "USA"], None, True),  # an alias
        (" Cote d'Ivoire.", "Côte d'Ivoire", None, True),  # accents
        (" the Netherlands.", "the Netherlands", None, True),
        (" Netherlands.", "the Netherlands", None, True),  # the answer's article is optional
        (" a big city. Rome is nice.", "Rome", None, False),  # only in a later sentence
        (" a big city\nRome", "Rome", None, False),  # a line break ends the sentence
        (" Rome, not Paris.", "Rome", "Paris", False),  # the old answer also present
        (" Parisian food.", "Paris", None, False),  # whole words only
        (" Papua New Guinea.", "Papua New Guinea", "Guinea", True),  # old inside new
        (" Guinea, near Papua New Guinea.", "Papua New Guinea", "Guinea", False),
        (" Washington, D.C. is its capital.", "Washington, D.C.", "Paris", True),
        (" St. Petersburg.", "Saint Petersburg", None, False),  # aliases are not guessed
        (" St. Petersburg.", ["Saint Petersburg", "St. Petersburg"], None, True),
        (" ", "Rome", None, False),
    ],
)
def test_matcher_cases(text, wanted, unwanted, verdict) -> None:
    assert gen_match(text, wanted, unwanted) is verdict


def test_first_sentence_and_states() -> None:
    assert first_sentence("  J. R. R. Tolkien wrote it. Then") == "J. R. R. Tolkien wrote it"
    assert first_sentence(" Mt. Fuji is high! Yes") == "Mt. Fuji is high"
    assert first_sentence(" 3.5 million people live there.") == "3.5 million people live there"
    assert first_sentence(" no end") == "no end"
    assert states(" Madrid, Spain.", "Spain") and not states(" Spain's. Madrid", "Madrid")


def test_batched_generation_equals_one_prompt_at_a_time(tiny) -> None:
    prompts = ["The capital of France is", "Peru is in", "The capital of France is", "Oslo"]
    batched = greedy_continuations(tiny, prompts, 6, batch_size=2)
    assert batched == [tiny.generate(p, 6) for p in prompts]


def test_sampled_generation_is_seeded_per_prompt_not_per_batch(tiny) -> None:
    """A prompt's sampled text depends on the seed and the prompt only: the same in any batch,
    the same on a rerun, and (at a high temperature) different for another seed."""
    prompts = ["The capital of France is", "Peru is in", "Oslo", "The capital of France is"]
    hot = Sampling(temperature=5.0, top_p=1.0, seed=3)
    batched = greedy_continuations(tiny, prompts, 5, batch_size=3, sampling=hot)
    alone = [greedy_continuations(tiny, [p], 5, sampling=hot)[0] for p in prompts]
    assert batched == alone == greedy_continuations(tiny, prompts, 5, sampling=hot)
    other = greedy_continuations(tiny, prompts, 5, sampling=Sampling(5.0, 1.0, seed=4))
    assert other != batched
    assert batched != greedy_continuations(tiny, prompts, 5)  # not the greedy text


def test_sampling_draws_from_the_nucleus(tiny) -> None:
    """A nucleus of one token is greedy; a nucleus of the top two draws only those two, both;
    no nucleus at a high temperature draws widely."""
    prompt = "The capital of France is"
    with torch.no_grad():
        logits = tiny.model(**tiny.encode([prompt])).logits[0, -1].float()
    probs, order = torch.softmax(logits, -1).sort(descending=True)
    assert probs[1] > 0.5 * probs[0]  # the top two are close enough to both be drawn
    text = [tiny.tokenizer.decode([int(t)]) for t in order[:2]]
    assert text[0] != text[1]

    def first(s: Sampling) -> str:
        return greedy_continuations(tiny, [prompt], 1, sampling=s)[0]

    greedy = greedy_continuations(tiny, [prompt], 1)[0]
    assert {first(Sampling(1.0, 1e-6, seed)) for seed in range(5)} == {greedy}
    two = float(probs[0] + 0.5 * probs[1])  # holds the first, needs the second
    drawn = [first(Sampling(1.0, two, seed)) for seed in range(40)]
    assert set(drawn) == set(text)
    wide = {first(Sampling(50.0, 1.0, seed)) for seed in range(40)}
    assert len(wide) >= 20


def test_sampled_convention_is_labelled_and_reads_its_own_generations(tiny) -> None:
    req = EditRequest("France", "The capital of {} is", "Rome", "Paris", id="r0")
    said = {req.rendered: " Rome."}
    (row,) = edit_metrics(
        tiny, [req], conventions=["gen_match", "gen_match_sampled"],
        generations={req.rendered: " Paris."}, sampled=said,
    )  # fmt: skip
    assert row["efficacy.gen_match"] == 0.0 and row["efficacy.gen_match_sampled"] == 1.0
    sampled = edit_generations(tiny, [req], 4, sampling=Sampling(seed=1))
    (row,) = edit_metrics(tiny, [req], conventions=["gen_match_sampled"])
    assert set(row) == {"id", "efficacy.gen_match_sampled", "generalization.gen_match_sampled",
                        "specificity.gen_match_sampled"}  # fmt: skip
    assert row["efficacy.gen_match_sampled"] == float(
        gen_match(edit_generations(tiny, [req], sampling=Sampling())[req.rendered], "Rome", "Paris")
    )
    assert (
        sampled[req.rendered]
        == greedy_continuations(
            tiny, [req.rendered], 4, until_sentence_end=True, sampling=Sampling(seed=1)
        )[0]
    )


@pytest.mark.parametrize("bad", [{"temperature": 0.0}, {"temperature": float("nan")},
                                 {"top_p": 0.0}, {"top_p": 1.5}])  # fmt: skip
def test_sampling_settings_are_validated(bad) -> None:
    with pytest.raises(ValueError):
        Sampling(**bad)


def test_generation_stops_after_the_first_sentence_without_changing_it(tiny) -> None:
    prompts = ["The capital of France is", "Peru is in", "Oslo", "A. B. C."]
    full = greedy_continuations(tiny, prompts, 12, batch_size=4)
    short = greedy_continuations(tiny, prompts, 12, batch_size=4, until_sentence_end=True)
    for a, b in zip(full, short):
        assert a.startswith(b) and first_sentence(a) == first_sentence(b)


@pytest.mark.slow
def test_real_model_generation_stops_early_with_the_same_verdicts(smollm) -> None:
    prompts = ["The capital of France is", "Tokyo is the capital of", "The currency of Japan is"]
    full = greedy_continuations(smollm, prompts, 16)
    short = greedy_continuations(smollm, prompts, 16, until_sentence_end=True)
    assert any(len(b) < len(a) for a, b in zip(full, short))
    for a, b in zip(full, short):
        assert a.startswith(b) and first_sentence(a) == first_sentence(b)
    assert gen_match(short[0], "Paris", "Rome")


def _single_token_word(h) -> tuple[int, str]:
    """A vocabulary entry that is one whole word after a space (byte-level BPE's 'Ġ')."""
    for piece, i in sorted(h.tokenizer.get_vocab().items(), key=lambda kv: kv[1]):
        word = piece.removeprefix("Ġ")
        if piece.startswith("Ġ") and len(word) >= 4 and word.isalpha():
            return i, word
    raise AssertionError("no single-token word in the vocabulary")


def test_gen_match_follows_an_edit_forced_by_a_known_delta(tiny) -> None:
    """A delta on the unembedding row of one word's token, along the final hidden state of
    the rewrite prompt, makes that word the first generated token: gen_match efficacy goes
    from 0 to 1, and a neighbour that now also says it fails."""
    tid, word = _single_token_word(tiny)
    prompt = "The capital of France is"
    ids = tiny.tokenizer(prompt, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        last = tiny.model(input_ids=ids, output_hidden_states=True).hidden_states[-1][0, -1]
    params = dict(tiny.model.named_parameters())
    name = tiny.arch.weight_name("unembed")
    name = name if name in params else tiny.arch.weight_name("embed")  # tied weights
    update = torch.zeros_like(params[name])
    update[tid] = 1e3 * last / last.norm() ** 2
    delta = Delta({name: update})
    before = tiny.generate(prompt, 1)
    assert before.strip() != word
    req = EditRequest(
        "France",
        "The capital of {} is",
        word,
        before.strip() or "Paris",
        neighbours=(Neighbour(prompt, before.strip() or "Paris"),),
        questions=(Question("portability", prompt, word, "Paris"),),
    )
    rows = {}
    for state in ("unedited", "edited"):
        ctx = delta.applied(tiny.model) if state == "edited" else torch.no_grad()
        with ctx:
            gens = edit_generations(tiny, [req], max_new_tokens=1)
            (rows[state],) = edit_metrics(
                tiny, [req], conventions=["gen_match"], generations=gens, questions=QUESTION_KINDS
            )
    assert gens[prompt] == " " + word
    assert rows["unedited"]["efficacy.gen_match"] == 0.0
    assert rows["edited"]["efficacy.gen_match"] == 1.0
    assert rows["edited"]["portability.gen_match"] == 1.0
    assert rows["edited"]["specificity.gen_match"] == 0.0
    assert rows["edited"]["generalization.gen_match"] is None  # no paraphrases
    assert rows["edited"]["reverse.gen_match"] is None  # no such question
    assert not any(k.endswith(".prob_compare") for k in rows["edited"])  # not selected


def test_gen_match_reads_aliases_and_skips_unselected_question_kinds(tiny) -> None:
    prompt = "Oslo is in"
    said = tiny.generate(prompt, 4)
    first = said.split()[0] if said.split() else said
    req = EditRequest("Oslo", "{} is in", "Atlantis", aliases={"Atlantis": (first,)})
    gens = {prompt: said}
    (row,) = edit_metrics(tiny, [req], conventions=["gen_match"], generations=gens, questions=[])
    assert row["efficacy.gen_match"] == float(states(said, first))
    assert set(row) == {"id", "efficacy.gen_match", "generalization.gen_match",
                        "specificity.gen_match"}  # fmt: skip
    with_q = EditRequest("Oslo", "{} is in", "Atlantis", questions=(Question("reverse", "x", "y"),))
    gens = {prompt: said, "x": " y."}
    kinds = ["reverse", "portability"]
    (row,) = edit_metrics(
        tiny, [with_q], conventions=["gen_match"], generations=gens, questions=kinds
    )
    assert row["reverse.gen_match"] == 1.0 and row["portability.gen_match"] is None


def test_conventions_in_run_configs_and_eval(tmp_path: Path) -> None:
    q = Question("reverse", "Peru is where you find", "Oslo", "Lima")
    reqs = [EditRequest("Oslo", "{} is in", "Peru", "Norway", ("Oslo lies in",), id="o",
                        questions=(q,))]  # fmt: skip
    write_jsonl(reqs, tmp_path / "r.jsonl")
    raw = {
        "model": "tiny-gpt2",
        "data": {"source": "file", "path": str(tmp_path / "r.jsonl"), "n_edits": 1},
        "methods": ["rome"],
    }
    cfg = resolve({**raw, "evaluation": {"conventions": ["gen_match"], "gen_match_tokens": 4}})
    assert cfg.evaluation["conventions"] == ["gen_match"]
    with pytest.raises(InputError, match="evaluation.conventions.0"):
        resolve({**raw, "evaluation": {"conventions": ["exact"]}})
    with pytest.raises(InputError, match="evaluation.conventions"):
        resolve({**raw, "evaluation": {"conventions": []}})
    with pytest.raises(InputError, match="evaluation.questions.0"):
        resolve({**raw, "evaluation": {"questions": ["hops"]}})
    family = LanguageFamily(resolve({**raw, "evaluation": {"questions": ["reverse"]}}), 0)
    summary, request = family.evaluate("final", family.edit_set("default"))
    assert request["reverse.prob_compare"] in (0.0, 1.0) and "reverse.prob_compare" in summary
    assert "efficacy.gen_match" not in summary
    assert "gen_match_sampling" not in resolve(raw).evaluation  # old configs resolve as before
    how = {"temperature": 0.5, "top_p": 0.9, "seed": 1}
    ev = {"conventions": ["gen_match_sampled"], "gen_match_sampling": how}
    cfg = resolve({**raw, "evaluation": ev})
    assert cfg.evaluation["gen_match_sampling"] == how
    family = LanguageFamily(cfg, 0)
    (req,) = family.edit_set("default")
    summary, request = family.evaluate("final", [req])
    said = greedy_continuations(family.h, [req.rendered], 16, until_sentence_end=True,
                                sampling=Sampling(**how))[0]  # fmt: skip
    assert request["generation.sampled"] == said
    assert summary["efficacy.gen_match_sampled"] == float(gen_match(said, "Peru", "Norway"))
    assert "efficacy.prob_compare" not in summary
    for bad in ({"temperature": 0.0}, {"top_p": 1.5}, {"seed": "1"}):
        with pytest.raises(InputError, match="evaluation.gen_match_sampling"):
            resolve({**raw, "evaluation": {"gen_match_sampling": bad}})
    run = tmp_path / "run"
    args = ["eval", "tiny-gpt2", "--requests", str(tmp_path / "r.jsonl"), "--run-dir", str(run)]
    out = runner.invoke(app, [*args, "--conventions", "gen_match,prob_compare"])
    assert out.exit_code == 0, out.output
    (summary,) = [r for r in RunDir(run).results.rows() if r["kind"] == "summary"]
    assert summary["efficacy.gen_match"] in (0.0, 1.0) and "efficacy.prob_compare" in summary
    assert "efficacy.token_acc" not in summary and "reverse.prob_compare" not in summary
    run2 = tmp_path / "run2"
    args2 = [*args[:-1], str(run2), "--questions", "reverse", "--conventions", "gen_match"]
    assert runner.invoke(app, args2).exit_code == 0
    (summary,) = [r for r in RunDir(run2).results.rows() if r["kind"] == "summary"]
    assert summary["reverse.gen_match"] in (0.0, 1.0) and "reverse.prob_compare" not in summary
    bad = runner.invoke(app, [*args[:-1], str(tmp_path / "r2"), "--conventions", "exact"])
    assert bad.exit_code == 2 and "'exact'" in bad.stderr and not (tmp_path / "r2").exists()
    run3 = tmp_path / "run3"
    sampled = [*args[:-1], str(run3), "--conventions", "gen_match_sampled", "--sample-seed", "2"]
    assert runner.invoke(app, sampled).exit_code == 0
    (summary,) = [r for r in RunDir(run3).results.rows() if r["kind"] == "summary"]
    assert (
        summary["efficacy.gen_match_sampled"] in (0.0, 1.0) and "efficacy.gen_match" not in summary
    )
    assert RunDir(run3).config()["sampling"] == {"temperature": 0.7, "top_p": 0.95, "seed": 2}
    for opt, value in (("--temperature", "0"), ("--top-p", "1.5")):
        bad = runner.invoke(app, [*sampled[:-5], str(tmp_path / "r4"), opt, value])
        assert bad.exit_code == 2 and opt in bad.stderr and not (tmp_path / "r4").exists()
