"""Second-moment statistics C = E[k k^T] of the MLP output projection's input.

One pass over the corpus fills every requested layer (hooks on all of them, the forward
stopped after the deepest one). Results are cached on disk keyed by model fingerprint, layer,
corpus identity, token count, sequence length and dtype, and record which corpus, how many
tokens and what sequence length made them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.progress import Progress
from safetensors import safe_open
from safetensors.torch import save_file

from editrisk.editing.context import sample_texts
from editrisk.errors import EditriskError
from editrisk.files import atomic_write_text
from editrisk.hooks import Trace
from editrisk.models import ModelHandle
from editrisk.settings import cache_dir, dtype_name
from editrisk.tokens import pack


class SecondMoment:
    """Running sum of x x^T over rows of x (float64), with a count.

    Batches accumulate in place into a float32 buffer, block by block and only on and above
    the diagonal (the sum is symmetric; with 4 blocks a side that is 10 of 16 block products,
    about 40 % fewer FLOPs than the full x^T x). The buffer is folded into the float64 sum
    (and mirrored) every `flush_rows` rows, so float32 never sums more than that many terms."""

    def __init__(self, dim: int, blocks: int = 4, flush_rows: int = 16384) -> None:
        self._sum = torch.zeros(dim, dim, dtype=torch.float64)
        self._acc: torch.Tensor | None = None
        self._pending = 0
        self.flush_rows = flush_rows
        self.count = 0
        step = -(-dim // blocks)
        self._cuts = [(i, min(i + step, dim)) for i in range(0, dim, step)]

    def add(self, x: torch.Tensor) -> None:
        x = x.detach().to(torch.float32)
        if self._acc is None or self._acc.device != x.device:
            self._flush()
            self._acc = torch.zeros(self._sum.shape, dtype=torch.float32, device=x.device)
        for a, (i0, i1) in enumerate(self._cuts):
            xi = x[:, i0:i1].T
            for j0, j1 in self._cuts[a:]:
                self._acc[i0:i1, j0:j1].addmm_(xi, x[:, j0:j1])
        self._pending += x.shape[0]
        self.count += x.shape[0]
        if self._pending >= self.flush_rows:
            self._flush()

    def _flush(self) -> None:
        if self._acc is None or not self._pending:
            return
        upper = self._acc.to("cpu", torch.float64)
        for a, (i0, i1) in enumerate(self._cuts):
            for j0, j1 in self._cuts[a:]:
                blk = upper[i0:i1, j0:j1]
                self._sum[i0:i1, j0:j1] += blk
                if j0 != i0:
                    self._sum[j0:j1, i0:i1] += blk.T
        self._acc.zero_()
        self._pending = 0

    @property
    def sum(self) -> torch.Tensor:
        self._flush()
        return self._sum

    def moment(self) -> torch.Tensor:
        if self.count == 0:
            raise EditriskError("no tokens went into this statistic")
        return self.sum / self.count

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"sum": self.sum, "count": torch.tensor(self.count)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self._flush()
        self._sum = state["sum"].to(torch.float64).clone()
        self.count = int(state["count"])


@dataclass(frozen=True)
class Corpus:
    """Texts plus a stable identity for cache keys."""

    texts: tuple[str, ...]
    identity: str


def pydoc_corpus() -> Corpus:
    """Offline default: the English reference text bundled with Python (pydoc_data.topics,
    ~110k tokens of prose and examples). Instant and identical on every machine."""
    from pydoc_data.topics import topics

    texts = tuple(topics[k] for k in sorted(topics))
    digest = hashlib.sha256("".join(texts).encode()).hexdigest()[:12]
    return Corpus(texts, f"pydoc-{digest}")


def get_corpus(h: ModelHandle, spec: str = "pydoc") -> Corpus:
    """Corpus by spec: 'pydoc' (default), 'model-samples', 'hf:NAME[:CONFIG]', or a path."""
    if spec == "pydoc":
        return pydoc_corpus()
    if spec == "model-samples":
        return model_sample_corpus(h)
    if spec.startswith("hf:"):
        name, _, config = spec[3:].partition(":")
        return hf_corpus(name, config=config or None)
    return file_corpus([p for p in spec.split(",") if p])


def model_sample_corpus(
    h: ModelHandle, n_texts: int = 256, length: int = 128, seed: int = 0, batch: int = 32
) -> Corpus:
    """Offline default: text sampled from the model itself with a fixed seed (cached)."""
    ident = f"model-samples-{n_texts}x{length}-s{seed}"
    path = cache_dir() / "corpora" / f"{h.fingerprint()}-{ident}.json"
    if path.exists():
        return Corpus(tuple(json.loads(path.read_text())), ident)
    texts: list[str] = []
    with Progress(transient=True) as progress:
        task = progress.add_task("sampling corpus from the model", total=n_texts)
        for i in range(0, n_texts, batch):
            texts += sample_texts(h, min(batch, n_texts - i), length, seed=seed + i, top_k=50)
            progress.update(task, advance=min(batch, n_texts - i))
    atomic_write_text(path, json.dumps(texts))
    return Corpus(tuple(texts), ident)


def file_corpus(paths: Sequence[str | Path]) -> Corpus:
    """Text files, or every *.txt under given folders; identity is a hash of their contents."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(p.rglob("*.txt"))
        elif p.is_file():
            files.append(p)
        else:
            raise EditriskError(f"corpus path not found: {p}")
    if not files:
        raise EditriskError(f"no text files in {list(map(str, paths))}")
    h = hashlib.sha256()
    texts = []
    for f in files:
        text = f.read_text(encoding="utf-8", errors="replace")
        h.update(text.encode())
        texts += [t for t in text.split("\n\n") if t.strip()]
    return Corpus(tuple(texts), f"files-{h.hexdigest()[:12]}")


def hf_corpus(
    name: str,
    split: str = "train",
    column: str = "text",
    limit: int = 10000,
    config: str | None = None,
) -> Corpus:
    """A Hugging Face dataset (needs the `datasets` package and network or a local copy)."""
    try:
        import datasets
    except ImportError as err:
        raise EditriskError(
            "a hub corpus needs the datasets package: pip install datasets"
        ) from err
    ds = datasets.load_dataset(name, config, split=split)
    texts = tuple(str(x) for x in ds[:limit][column])
    return Corpus(texts, f"hf-{name.replace('/', '_')}-{config}-{split}-{limit}")


def _token_chunks(h: ModelHandle, corpus: Corpus, seq_len: int, max_tokens: int) -> list[list[int]]:
    chunks: list[list[int]] = []
    total = 0
    for text in corpus.texts:
        ids = h.tokenizer(text, add_special_tokens=False)["input_ids"]
        for i in range(0, len(ids), seq_len):
            piece = ids[i : i + seq_len][: max_tokens - total]
            if len(piece) >= 2:
                chunks.append(piece)
                total += len(piece)
            if total >= max_tokens:
                return chunks
    return chunks


def _path(h: ModelHandle, layer: int, corpus: Corpus, max_tokens: int, seq_len: int) -> Path:
    """Cache file of one statistic, named by everything that determines it (the sequence
    length too: each chunk's first tokens see less context than later ones)."""
    ident = f"{corpus.identity}-{max_tokens}tok-{seq_len}seq-{dtype_name(h.dtype)}"
    name = f"L{layer}-{ident}.safetensors"
    return cache_dir() / "stats" / h.fingerprint() / name


def load_moment(path: Path) -> tuple[torch.Tensor, dict[str, str]]:
    """A cached statistic and the provenance recorded with it."""
    with safe_open(str(path), framework="pt") as f:
        return f.get_tensor("moment"), f.metadata()


def save_moment(path: Path, moment: torch.Tensor, meta: dict[str, str]) -> None:
    """Cache a statistic with its provenance (written atomically)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file({"moment": moment.contiguous()}, str(tmp), metadata=meta)
    tmp.replace(path)


def layer_covariances(
    h: ModelHandle,
    layers: Iterable[int],
    corpus: Corpus,
    *,
    max_tokens: int = 32768,
    seq_len: int = 128,
    batch_size: int = 16,
    progress: bool = True,
) -> dict[int, torch.Tensor]:
    """C = E[k k^T] (float64, on CPU) for each layer; missing layers filled in one pass."""
    layers = sorted(set(layers))
    out: dict[int, torch.Tensor] = {}
    missing = []
    for layer in layers:
        path = _path(h, layer, corpus, max_tokens, seq_len)
        if path.exists():
            out[layer] = load_moment(path)[0]
        else:
            missing.append(layer)
    if not missing:
        return out
    names = {layer: h.arch.name("mlp_out", layer) for layer in missing}
    stats = {layer: SecondMoment(h.arch.intermediate_size) for layer in missing}
    chunks = _token_chunks(h, corpus, seq_len, max_tokens)
    if not chunks:
        raise EditriskError(f"corpus {corpus.identity} has no text to collect statistics from")
    pad = h.tokenizer.pad_token_id or 0
    deepest = names[max(missing)]
    n_tokens = sum(len(c) for c in chunks)
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task(f"covariance, layers {missing}", total=n_tokens)
        for i in range(0, len(chunks), batch_size):
            part = chunks[i : i + batch_size]
            ids, mask = pack(part, pad, h.device)
            keep = mask.bool()
            with (
                torch.no_grad(),
                Trace(
                    h.model,
                    list(names.values()),
                    retain_input=True,
                    retain_output=False,
                    stop_after=deepest,
                ) as tr,
            ):
                h.model(input_ids=ids, attention_mask=mask)
            drop = ~keep.reshape(-1)
            for layer, name in names.items():
                x = tr[name].input.reshape(-1, tr[name].input.shape[-1])
                stats[layer].add(x[~drop] if bool(drop.any()) else x)  # no copy when unpadded
            bar.update(task, advance=int(keep.sum()))
    for layer, stat in stats.items():
        meta = {
            "corpus": corpus.identity,
            "tokens": str(stat.count),
            "seq_len": str(seq_len),
            "layer": str(layer),
            "module": names[layer],
            "model_fingerprint": h.fingerprint(),
            "dtype": dtype_name(h.dtype),
        }
        save_moment(_path(h, layer, corpus, max_tokens, seq_len), stat.moment(), meta)
        out[layer] = stat.moment()
    return out


def covariance_info(
    h: ModelHandle, layer: int, corpus: Corpus, max_tokens: int, seq_len: int = 128
) -> dict[str, str] | None:
    """The recorded provenance (corpus, token count, sequence length) of a cached statistic,
    if cached."""
    path = _path(h, layer, corpus, max_tokens, seq_len)
    return load_moment(path)[1] if path.exists() else None
