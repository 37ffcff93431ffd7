"""Shared fixtures: tiny seeded models of every family, and the real model (slow tier)."""

from __future__ import annotations

import os

# No network in tests: a hub id resolves from the local cache or fails at once.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from editrisk.models import TINY_CORE, TINY_MODELS, ModelHandle, load_model  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(params=TINY_CORE)
def tiny(request: pytest.FixtureRequest) -> ModelHandle:
    """A fresh tiny model of each core family (function scope: tests may mutate it).

    The five layouts every other family repeats (GPT-2's Conv1D, GPT-J, NeoX, Llama with
    tied and untied embeddings); what touches a model runs on these."""
    return load_model(request.param, device="cpu")


@pytest.fixture(params=TINY_MODELS)
def tiny_family(request: pytest.FixtureRequest) -> ModelHandle:
    """A fresh tiny model of every built-in family (the editor x architecture table and
    the location checks: a family is supported when these pass on it)."""
    return load_model(request.param, device="cpu")


@pytest.fixture(scope="session")
def smollm() -> ModelHandle:
    """The real SmolLM2-135M-Instruct, loaded once per session."""
    return load_model("smollm2-135m", device="cpu")
