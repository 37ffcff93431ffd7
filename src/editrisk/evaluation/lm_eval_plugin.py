"""The `editrisk` model of lm-evaluation-harness: any model editrisk loads (a built-in name, a
folder, a `.gguf` file, a hub id), with a saved Delta applied, evaluated by lm-eval's own
`HFLM` (so its numbers are those of `--model hf` on the edited weights):

    python -m editrisk.evaluation.lm_eval_plugin run --model editrisk \\
        --model_args model=smollm2-135m,delta=edit.safetensors --tasks hellaswag

`python -m editrisk.evaluation.lm_eval_plugin` is lm-eval's own command line (same
arguments) with this model registered first: lm-eval 0.4.13 has no plugin discovery, so the
module must be imported before lm-eval looks the name up. Releases that discover plugins read
the `lm_eval.models` entry point editrisk declares (`lm_eval run --model editrisk ...`) or
import it with `--plugins editrisk.evaluation.lm_eval_plugin`. From Python, importing this
module registers the model: `lm_eval.simple_evaluate(model="editrisk", model_args=...)`.
"""

from __future__ import annotations

from typing import Any

import lm_eval.models  # noqa: F401 - lm-eval fills its registry only while it is empty
from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM


class EditriskLM(HFLM):
    """`HFLM` around a model loaded by editrisk (`model=`), a Delta file (`delta=`) applied
    once it is checked against the model's fingerprint; `dtype=` float32 (default),
    bfloat16 or float16; `device=` as lm-eval passes it (default: cuda when present)."""

    def __init__(
        self,
        model: str | None = None,
        delta: str | None = None,
        dtype: str = "float32",
        device: str | None = None,
        batch_size: int | str = 1,
        **kwargs: Any,
    ) -> None:
        from editrisk.cli._common import load_delta
        from editrisk.errors import EditriskError
        from editrisk.models import load_model

        if not model:
            raise EditriskError(
                "--model editrisk needs model=NAME_OR_PATH in --model_args "
                "(e.g. model=smollm2-135m,delta=edit.safetensors)"
            )
        h = load_model(str(model), device=device or "auto", dtype=str(dtype))
        d = None
        if delta:
            d = load_delta(str(delta))
            d.check_applies(h.model, h.fingerprint(), str(delta))
            if d.codebooks:
                raise EditriskError(f"{delta}: a codebook (GRACE) delta cannot be evaluated "
                                    "here; it changes no weight")  # fmt: skip
            d.apply(h.model, backup=False)
        self.editrisk_model, self.editrisk_delta = str(model), str(delta) if delta else None
        self.editrisk_fingerprint = h.fingerprint()
        super().__init__(pretrained=h.model, tokenizer=h.tokenizer, batch_size=batch_size,
                         **kwargs)  # fmt: skip

    def get_model_info(self) -> dict[str, Any]:
        """What lm-eval records about the model (without asking the hub for a revision)."""
        return {
            "model_num_parameters": sum(p.numel() for p in self.model.parameters()),
            "model_dtype": str(self.model.dtype),
            "editrisk_model": self.editrisk_model,
            "editrisk_delta": self.editrisk_delta,
            "editrisk_base_fingerprint": self.editrisk_fingerprint,
        }


def main() -> None:
    """lm-eval's command line with the `editrisk` model registered."""
    from lm_eval.__main__ import cli_evaluate

    cli_evaluate()


if __name__ == "__main__":  # register the importable class, not this script's copy of it
    from editrisk.evaluation import lm_eval_plugin

    lm_eval_plugin.main()
else:
    register_model("editrisk")(EditriskLM)
