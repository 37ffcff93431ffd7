"""Load time of smollm2-135m (first conversion vs cached) and forward throughput (tokens/s)."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))

import torch  # noqa: E402
from common import report, setup_threads, timed  # noqa: E402

from editrisk.models import load_model  # noqa: E402
from editrisk.settings import CACHE_ENV  # noqa: E402


def main() -> None:
    setup_threads()
    rows = []
    tmp = tempfile.mkdtemp(prefix="editrisk-bench-")
    old = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = tmp
    try:
        t = time.perf_counter()
        load_model("smollm2-135m", device="cpu")
        rows.append(
            {
                "what": "load smollm2-135m, first (GGUF -> safetensors)",
                "seconds": time.perf_counter() - t,
            }
        )
        t = time.perf_counter()
        h = load_model("smollm2-135m", device="cpu")
        rows.append({"what": "load smollm2-135m, cached", "seconds": time.perf_counter() - t})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is None:
            os.environ.pop(CACHE_ENV)
        else:
            os.environ[CACHE_ENV] = old
    vocab = h.model.config.vocab_size
    gen = torch.Generator().manual_seed(0)
    for batch, length in ((1, 16), (10, 16), (8, 64), (4, 256)):
        ids = torch.randint(0, vocab, (batch, length), generator=gen)

        @torch.no_grad()
        def fwd(ids: torch.Tensor = ids) -> None:
            h.model(input_ids=ids)

        fwd()
        secs = timed(fwd, repeat=3)
        rows.append(
            {
                "what": f"forward batch={batch} len={length}",
                "seconds": secs,
                "tokens/s": batch * length / secs,
            }
        )
    report("model", rows)


if __name__ == "__main__":
    main()
