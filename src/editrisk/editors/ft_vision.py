"""Fine-tuning baselines of Santurkar et al.: `ft-local` trains one layer, `ft-global` every
parameter from that layer to the output, on the styled exemplars with their true labels.

Batch-norm statistics stay frozen (eval mode); the model's weights are restored bitwise after
training and the change is returned as a dense Delta.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from editrisk.delta import Delta
from editrisk.editors.base import Editor, HParams, register, require


@dataclass
class FTVisionHParams(HParams):
    layer: int | str = 3  # editable-layer index in the architecture table, or module path
    steps: int = 40  # full-batch optimisation steps over the exemplars
    lr: float = 1e-3  # Adam learning rate
    weight_decay: float = 0.0
    seed: int = 0

    def validate(self) -> None:
        require(self.steps >= 1, f"steps must be >= 1, got {self.steps}")
        require(self.lr > 0, f"lr must be > 0, got {self.lr}")


class _FTVision(Editor):
    kind = "vision"
    hparams_cls = FTVisionHParams
    scope = "local"

    def trainable(self, model, layer: str) -> list[str]:  # noqa: ANN001 - Classifier
        names = [n for n, _ in model.model.named_parameters()]
        if self.scope == "local":
            return [n for n in names if n.startswith(layer + ".")]
        first = next(i for i, n in enumerate(names) if n.startswith(layer + "."))
        return names[first:]  # definition order = forward order for the supported families

    def edit(self, model, requests) -> Delta:  # noqa: ANN001 - Classifier, ConceptRewriteTask
        hp: FTVisionHParams = self.hparams  # type: ignore[assignment]
        task = requests
        layer = model.layer(hp.layer)
        net = model.model
        params = dict(net.named_parameters())
        names = self.trainable(model, layer)
        saved = {n: params[n].detach().clone() for n in names}
        flags = {n: p.requires_grad for n, p in params.items()}
        torch.manual_seed(hp.seed)
        x = task.train_images.to(model.device).float()
        y = task.train_labels.to(model.device)
        net.eval()
        try:
            for n, p in params.items():
                p.requires_grad_(n in saved)
            opt = torch.optim.Adam(
                [params[n] for n in names], lr=hp.lr, weight_decay=hp.weight_decay
            )
            for _ in range(hp.steps):
                loss = F.cross_entropy(net(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
            with torch.no_grad():
                updates = {n: (params[n] - saved[n]).detach().clone() for n in names}
        finally:
            with torch.no_grad():
                for n, p in params.items():
                    if n in saved:
                        p.copy_(saved[n])
                    p.requires_grad_(flags[n])
                    p.grad = None
        return Delta(
            updates,
            {**self.metadata(model), "layer": layer, "task": task.name, "final_loss": loss.item()},
        )


@register
class FTLocal(_FTVision):
    name = "ft-local"
    scope = "local"


@register
class FTGlobal(_FTVision):
    name = "ft-global"
    scope = "global"
