"""General ability: held-out facts, perplexity and lm-evaluation-harness on the real model
(the HFLM path against lm-eval's own `hf` model: tests/test_lm_eval.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from editrisk.evaluation.general import (
    default_text_sample,
    heldout_accuracy,
    perplexity,
    run_lm_eval,
)
from editrisk.evaluation.scoring import score_targets
from editrisk.requests import EditRequest
from editrisk.tokens import target_ids

FACTS = [
    EditRequest(
        "France",
        "The capital of {} is",
        "Rome",
        "Paris",
        id="a",
        extra={"alternatives": ["Rome", "Berlin"]},
    ),
    EditRequest("Spain", "The capital of {} is", "Oslo", "Madrid", id="b"),
]


def test_heldout_accuracy_by_hand(tiny) -> None:
    got = heldout_accuracy(tiny, FACTS)
    a = score_targets(tiny, [("The capital of France is", t) for t in ("Paris", "Rome", "Berlin")])
    b = score_targets(tiny, [("The capital of Spain is", t) for t in ("Madrid", "Oslo")])
    hits = [a[0].prob > max(a[1].prob, a[2].prob), b[0].prob > b[1].prob]
    assert got["heldout.prob_compare"] == pytest.approx(sum(hits) / 2)
    assert got["heldout.token_acc"] == pytest.approx(
        (a[0].token_accuracy + b[0].token_accuracy) / 2
    )
    assert got["heldout.n"] == 2


@torch.no_grad()
def test_perplexity_by_hand(tiny) -> None:
    text = "the cat sat on the mat today"
    got = perplexity(tiny, [text], max_words=4)
    tok = tiny.tokenizer
    total, n = 0.0, 0
    for first, rest in (("the", "cat sat on"), ("the", "mat today")):
        p, t = tok(first, add_special_tokens=False)["input_ids"], target_ids(tok, rest)
        logp = torch.log_softmax(tiny.model(input_ids=torch.tensor([p + t])).logits[0], -1)
        total += sum(float(logp[len(p) - 1 + j, t[j]]) for j in range(len(t)))
        n += len(t)
    assert got["perplexity.tokens"] == n
    assert got["perplexity"] == pytest.approx(math.exp(-total / n), rel=1e-4)


def test_default_text_sample_is_real_and_deterministic() -> None:
    texts = default_text_sample(40, seed=0)
    assert texts == default_text_sample(40, seed=0) and len(texts) == 5
    assert any("capital" in t or "currency" in t or "city in" in t for t in texts)


@pytest.mark.slow
def test_lm_eval_runs_a_local_task(smollm, tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("lm_eval")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf"))
    docs = [
        {
            "question": "The capital of France is",
            "choices": ["Paris", "Rome", "Tokyo"],
            "answer": 0,
        },
        {"question": "The capital of Italy is", "choices": ["Paris", "Rome", "Tokyo"], "answer": 1},
        {"question": "The capital of Japan is", "choices": ["Paris", "Rome", "Tokyo"], "answer": 2},
        {"question": "The capital of Japan is", "choices": ["Paris", "Rome", "Tokyo"], "answer": 0},
    ]
    data = tmp_path / "capitals.jsonl"
    data.write_text("".join(json.dumps(d) + "\n" for d in docs))
    (tmp_path / "task.yaml").write_text(
        "task: editrisk_local_capitals\ndataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    test: {data}\ntest_split: test\n"
        "output_type: multiple_choice\ndoc_to_text: '{{question}}'\n"
        "doc_to_choice: '{{choices}}'\ndoc_to_target: answer\ntarget_delimiter: ' '\n"
        "metric_list:\n  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n"
    )
    res = run_lm_eval(smollm, ["editrisk_local_capitals"], include_path=tmp_path)
    expected = 0
    for d in docs:
        s = score_targets(smollm, [(d["question"], c) for c in d["choices"]])
        expected += max(range(3), key=lambda i: s[i].logprob) == d["answer"]
    assert res["editrisk_local_capitals"]["acc"] == pytest.approx(expected / 4)
    assert expected == 3  # the real model knows the three capitals; the fourth key is wrong
