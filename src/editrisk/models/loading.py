"""`load_model(spec)`: built-in names, local folders, GGUF files or hub ids -> `ModelHandle`."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from editrisk.errors import EditriskError
from editrisk.models.adapters import adapt_model
from editrisk.models.arch import ArchMap
from editrisk.models.sources import (  # noqa: F401 - re-exported names
    BUILTIN_MODELS,
    SMOLLM2,
    SMOLLM2_INSTALL,
    resolve_source,
    smollm2_gguf_path,
)
from editrisk.models.tiny import build_tiny, tiny_tokenizer
from editrisk.settings import cache_dir, dtype_name, resolve_device, resolve_dtype

log = logging.getLogger(__name__)


@dataclass
class ModelHandle:
    """A causal LM, its tokenizer and its resolved architecture map."""

    model: nn.Module
    tokenizer: PreTrainedTokenizerBase
    arch: ArchMap
    name: str
    _fingerprint: str | None = field(default=None, repr=False)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    @property
    def context_length(self) -> int | None:
        """The most tokens the model reads at once (its position table), if it says."""
        cfg = self.model.config
        for key in ("n_positions", "max_position_embeddings", "n_ctx", "seq_length"):
            if isinstance(getattr(cfg, key, None), int):
                return getattr(cfg, key)
        return None

    def fingerprint(self) -> str:
        """Stable hash of the config and the current weights (cache key); computed once."""
        if self._fingerprint is None:
            self._fingerprint = model_fingerprint(self.model)
        return self._fingerprint

    def encode(self, texts: list[str], **kwargs: object) -> dict[str, torch.Tensor]:
        """Right-padded batch on the model's device."""
        self.tokenizer.padding_side = "right"
        batch = self.tokenizer(texts, return_tensors="pt", padding=True, **kwargs)
        return {k: v.to(self.device) for k, v in batch.items()}

    @torch.no_grad()
    def generate(self, prompt: str, max_new_tokens: int = 12) -> str:
        """Greedy completion of `prompt` (the new text only); refused when the prompt and
        `max_new_tokens` do not fit the model's context."""
        batch = self.encode([prompt])
        n, limit = batch["input_ids"].shape[1], self.context_length
        if limit is not None and n + max_new_tokens > limit:
            raise EditriskError(
                f"a prompt of {n} tokens and {max_new_tokens} new tokens do not fit the "
                f"{limit} tokens {self.name} reads"
            )
        out = self.model.generate(
            **batch,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=self.tokenizer.pad_token_id,
        )
        return self.tokenizer.decode(
            out[0, batch["input_ids"].shape[1] :], skip_special_tokens=True
        )


def model_fingerprint(model: nn.Module) -> str:
    """sha256 over the config (as JSON) and every parameter's name, dtype, shape and bytes."""
    h = hashlib.sha256()
    config = getattr(model, "config", None)
    if config is not None:
        cfg = config.to_dict()
        for volatile in (
            "transformers_version",
            "_name_or_path",
            "_attn_implementation",
            "torch_dtype",
            "dtype",
        ):
            cfg.pop(volatile, None)
        h.update(json.dumps(cfg, sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def _convert_gguf(gguf: Path, out: Path) -> None:
    """De-quantise a GGUF checkpoint once and save it as a safetensors HF folder (atomic)."""
    _quiet_transformers()
    log.info("converting %s to safetensors in %s (one time)", gguf.name, out)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    tmp.rename(out)


def converted_gguf_dir(gguf: Path) -> Path:
    """Cache folder holding the safetensors conversion of `gguf` (converted on first use)."""
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    out = cache_dir() / "models" / f"{gguf.stem}-{key.hexdigest()[:12]}"
    if not (out / "config.json").is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        _convert_gguf(gguf, out)
    return out


def _load_hf(
    source: str | Path, dtype: torch.dtype, trust_remote_code: bool, local_only: bool = False
) -> tuple:
    _quiet_transformers()
    opts = dict(trust_remote_code=trust_remote_code, local_files_only=local_only)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            source, dtype=dtype, attn_implementation="eager", **opts
        )
        tok = AutoTokenizer.from_pretrained(source, **opts)
    except OSError as err:
        raise EditriskError(f"cannot load model '{source}': {str(err).splitlines()[0]}") from err
    return model, tok


def load_model(
    spec: str | Path,
    *,
    device: str | torch.device | None = "auto",
    dtype: str | torch.dtype | None = "float32",
    seed: int = 0,
    trust_remote_code: bool = False,
) -> ModelHandle:
    """Load a causal LM by built-in name, local folder, `.gguf` file or Hugging Face hub id
    (`owner/name`, or a short id such as `gpt2`).

    Built-ins: `smollm2-135m` (real, offline) and the `tiny-*` fixtures (seeded by `seed`).
    A hub id not in the local cache fails within seconds when HF_HUB_OFFLINE is set or the
    hub cannot be reached, saying how to work offline. Remote code is never executed unless
    `trust_remote_code=True`.
    """
    source = resolve_source(spec)  # before any weights: a bad name fails at once
    dev, dt = resolve_device(device), resolve_dtype(dtype)
    name = source.name
    start = time.perf_counter()
    if source.kind == "tiny":
        model, tok = build_tiny(name, seed=seed), tiny_tokenizer()
    elif source.kind in ("smollm2", "gguf"):
        model, tok = _load_hf(converted_gguf_dir(source.path), dt, False)
    elif source.kind == "folder":
        model, tok = _load_hf(name, dt, trust_remote_code)
    else:
        model, tok = _load_hf(name, dt, trust_remote_code, local_only=source.local_only)
    arch = ArchMap.for_model(model)
    adapt_model(model, arch)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = model.to(device=dev, dtype=dt).eval()
    model.requires_grad_(False)
    log.info("loaded %s (%s, %s) in %.2fs", name, dev, dtype_name(dt), time.perf_counter() - start)
    return ModelHandle(model=model, tokenizer=tok, arch=arch, name=name)
