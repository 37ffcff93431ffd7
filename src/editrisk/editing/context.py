"""Context prefixes: short texts sampled from the model that keys/values average over.

ROME and MEMIT average the key and the target over several random contexts so the edit holds
wherever the subject appears. Prefixes are seeded and cached per model fingerprint.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import torch

from editrisk.files import atomic_write_text
from editrisk.models import ModelHandle
from editrisk.models.kvcache import cache_kwargs, cache_of
from editrisk.settings import cache_dir

DEFAULT_PREFIX_SPEC: tuple[tuple[int, int], ...] = ((5, 5), (5, 10))  # (count, tokens)


STARTERS = ("The", "I", "In", "It", "A", "We", "This", "When", "After", "He", "She", "There")


@torch.no_grad()
def sample_texts(h: ModelHandle, count: int, length: int, seed: int, top_k: int = 5) -> list[str]:
    """`count` texts of `length` tokens sampled (top-k) from the model, deterministically,
    each started from a common English word (chosen by the seed)."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    pick = torch.randint(len(STARTERS), (count,), generator=gen).tolist()
    starts = [h.tokenizer(STARTERS[i], add_special_tokens=False)["input_ids"][:1] for i in pick]
    ids = torch.tensor(starts, dtype=torch.long, device=h.device)
    past = None
    for _ in range(length):
        out = h.model(
            input_ids=ids[:, -1:] if past is not None else ids,
            use_cache=True,
            **cache_kwargs(h.model, past),
        )
        past = cache_of(out)
        logits = out.logits[:, -1].float().cpu()
        top = logits.topk(top_k, dim=-1)
        choice = torch.multinomial(torch.softmax(top.values, -1), 1, generator=gen)
        nxt = top.indices.gather(1, choice).to(h.device)
        ids = torch.cat([ids, nxt], 1)
    return [h.tokenizer.decode(row, skip_special_tokens=True) for row in ids]


def context_prefixes(
    h: ModelHandle,
    spec: Sequence[tuple[int, int]] = DEFAULT_PREFIX_SPEC,
    seed: int = 0,
) -> list[str]:
    """The empty prefix plus `count` sampled prefixes of each length in `spec` (cached)."""
    key = "-".join(f"{c}x{n}" for c, n in spec)
    path = cache_dir() / "context" / f"{h.fingerprint()}-v2-{key}-s{seed}.json"
    if path.exists():
        return json.loads(path.read_text())
    prefixes = [""]
    for i, (count, length) in enumerate(spec):
        for text in sample_texts(h, count, length, seed=seed * 1000 + i):
            clean = " ".join(text.replace("{", " ").replace("}", " ").split())
            prefixes.append(f"{clean}. ")
    atomic_write_text(path, json.dumps(prefixes))
    return prefixes
