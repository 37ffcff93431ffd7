"""The one hook utility: read, replace or add to module inputs/outputs during a forward pass.

Every editor, the covariance collector and the evaluators go through `Trace`. Hooks are always
removed when the `with` block ends, even on error, and the forward pass can be stopped right
after a given module has run (cheap statistics collection).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

EditFn = Callable[[str, Any], Any]


class StopForward(Exception):
    """Raised inside a hook to end the forward pass early; swallowed by `Trace`."""


@dataclass
class Record:
    """What a traced module saw in the latest forward pass."""

    input: Any = None
    output: Any = None


def get_module(model: nn.Module, name: str) -> nn.Module:
    try:
        return model.get_submodule(name)
    except AttributeError as err:
        raise KeyError(f"model has no module named '{name}'") from err


def _first(x: Any) -> Any:
    return x[0] if isinstance(x, tuple) else x


def _replace_first(x: Any, value: torch.Tensor) -> Any:
    return (value, *x[1:]) if isinstance(x, tuple) else value


class Trace:
    """Context manager tracing named modules of `model`.

    Args:
        modules: module names to hook.
        retain_input / retain_output: keep the module's (first) input / output tensor.
        edit_input: `fn(name, tensor) -> tensor` replacing a module's first positional input.
        edit_output: `fn(name, tensor) -> tensor` replacing a module's (first) output.
        stop_after: a module name; the forward pass ends once it has run.
        detach: detach retained tensors (set False to backpropagate through them).
        clone: clone retained tensors so later in-place ops cannot change them.

    After the block, `trace[name].input` / `.output` hold what was retained.
    """

    def __init__(
        self,
        model: nn.Module,
        modules: str | Iterable[str],
        *,
        retain_input: bool = False,
        retain_output: bool = True,
        edit_input: EditFn | None = None,
        edit_output: EditFn | None = None,
        stop_after: str | None = None,
        detach: bool = True,
        clone: bool = False,
    ) -> None:
        self.names = [modules] if isinstance(modules, str) else list(modules)
        if stop_after is not None and stop_after not in self.names:
            self.names.append(stop_after)
        self.model = model
        self.records: dict[str, Record] = {n: Record() for n in self.names}
        self._opts = (retain_input, retain_output, edit_input, edit_output, detach, clone)
        self._stop_after = stop_after
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def __getitem__(self, name: str) -> Record:
        return self.records[name]

    def _keep(self, t: Any) -> Any:
        _, _, _, _, detach, clone = self._opts
        if isinstance(t, torch.Tensor):
            t = t.detach() if detach else t
            return t.clone() if clone else t
        return t

    def __enter__(self) -> Trace:
        retain_in, retain_out, edit_in, edit_out, _, _ = self._opts
        try:
            for name in self.names:
                module = get_module(self.model, name)

                def pre_hook(mod: nn.Module, args: tuple, _name: str = name) -> Any:
                    if edit_in is not None:
                        args = _replace_first(args, edit_in(_name, args[0]))
                    if retain_in:
                        self.records[_name].input = self._keep(args[0])
                    return args if edit_in is not None else None

                def fwd_hook(mod: nn.Module, args: tuple, out: Any, _name: str = name) -> Any:
                    if edit_out is not None:
                        out = _replace_first(out, edit_out(_name, _first(out)))
                    if retain_out:
                        self.records[_name].output = self._keep(_first(out))
                    if _name == self._stop_after:
                        raise StopForward
                    return out if edit_out is not None else None

                if retain_in or edit_in is not None:
                    self._handles.append(module.register_forward_pre_hook(pre_hook))
                self._handles.append(module.register_forward_hook(fwd_hook))
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: Any) -> bool:
        self.close()
        return exc_type is not None and issubclass(exc_type, StopForward)


def add_to_output(vectors: dict[str, torch.Tensor]) -> EditFn:
    """An `edit_output` that adds a tensor (broadcast) to each named module's output."""

    def fn(name: str, out: torch.Tensor) -> torch.Tensor:
        return out + vectors[name].to(out.dtype) if name in vectors else out

    return fn
