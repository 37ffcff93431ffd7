"""Delta: an edit as a value (parameter name -> dense update or low-rank factors; module
name -> codebook, for editors that insert a lookup instead of changing a weight: GRACE).

Computed without touching the model, then applied, reverted (bitwise), scaled, restricted,
added and saved. 1-LI is `delta.restrict(layers=[l]).scale(alpha)`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from editrisk.diagnostics import matrix_norms
from editrisk.errors import EditriskError, FileError, InputError

_LAYER_RE = re.compile(r"\.(\d+)\.")


@dataclass(frozen=True)
class LowRank:
    """Update `left @ right.T`: left (rows, r), right (cols, r)."""

    left: torch.Tensor
    right: torch.Tensor

    def __post_init__(self) -> None:
        if self.left.ndim != 2 or self.right.ndim != 2 or self.left.shape[1] != self.right.shape[1]:
            raise ValueError(
                f"low-rank factors must be (m, r) and (n, r); got "
                f"{tuple(self.left.shape)} and {tuple(self.right.shape)}"
            )

    @property
    def shape(self) -> torch.Size:
        return torch.Size((self.left.shape[0], self.right.shape[0]))

    @property
    def rank(self) -> int:
        return self.left.shape[1]

    def dense(self) -> torch.Tensor:
        return self.left @ self.right.T


Update = torch.Tensor | LowRank


@dataclass(frozen=True)
class Codebook:
    """A key-value adaptor at one module (GRACE): where the module's input at a position lies
    within `radii[i]` of `keys[i]` (the nearest such key), its output there is replaced by
    `values[i]`, moved by `scale` from the unedited output (1-LI: scale alpha); everywhere
    else the output is untouched, bitwise. `ids` name the entries: adding codebooks keeps the
    later of two entries with one id (an editor that moves an entry's radius re-issues it)."""

    keys: torch.Tensor  # (n, in)
    values: torch.Tensor  # (n, out)
    radii: torch.Tensor  # (n,)
    ids: torch.Tensor  # (n,) int64
    scale: float = 1.0

    def __post_init__(self) -> None:
        n = self.keys.shape[0]
        if not (
            self.keys.ndim == 2 and self.values.ndim == 2 and self.values.shape[0] == n
            and tuple(self.radii.shape) == (n,) and tuple(self.ids.shape) == (n,)
        ):  # fmt: skip
            raise ValueError(
                f"a codebook needs keys (n, in), values (n, out), radii (n,) and ids (n,); got "
                f"{[tuple(t.shape) for t in (self.keys, self.values, self.radii, self.ids)]}"
            )

    def __len__(self) -> int:
        return self.keys.shape[0]

    def tensors(self) -> tuple[torch.Tensor, ...]:
        """The floating-point parts (what must be finite)."""
        return self.keys, self.values, self.radii

    def merge(self, later: Codebook) -> Codebook:
        """The entries of both, `later`'s where an id is in both (one scale)."""
        if self.scale != later.scale:
            raise EditriskError("cannot add codebooks scaled differently")
        mine = ~torch.isin(self.ids, later.ids.to(self.ids.device))
        return Codebook(
            *(torch.cat([a[mine], b.to(a.device)]) for a, b in
              zip((self.keys, self.values, self.radii, self.ids),
                  (later.keys, later.values, later.radii, later.ids))),
            scale=self.scale,
        )  # fmt: skip

    def __call__(self, _module: nn.Module, args: tuple, out: torch.Tensor) -> torch.Tensor:
        """Forward hook: the module's output with the codebook's replacements."""
        x = args[0].reshape(-1, self.keys.shape[1])
        dist = torch.cdist(x.float(), self.keys.to(x.device, torch.float32))
        dist = torch.where(dist <= self.radii.to(dist), dist, torch.inf)
        nearest, idx = dist.min(1) if len(self) else (dist.new_full((x.shape[0],), torch.inf), None)
        hit = torch.isfinite(nearest)
        if not bool(hit.any()):
            return out
        flat = out.reshape(-1, out.shape[-1]).clone()
        value = self.values.to(flat.device, flat.dtype)[idx[hit]]
        flat[hit] = value if self.scale == 1.0 else flat[hit] + self.scale * (value - flat[hit])
        return flat.view_as(out)


def merged_layers(a: Any, b: Any) -> dict[str, int | None] | list[int] | None:
    """The `layers` metadata of two deltas combined. Two kinds exist: a family's table
    (parameter name -> layer index), merged; an editor's list of the layers it edited, joined.
    A list says nothing per parameter, so beside a table only the table is kept."""
    if isinstance(a, dict) or isinstance(b, dict):
        return {**(a if isinstance(a, dict) else {}), **(b if isinstance(b, dict) else {})}
    return sorted({*(a or []), *(b or [])}) or None


def _dense(u: Update) -> torch.Tensor:
    return u.dense() if isinstance(u, LowRank) else u


def layer_of(param_name: str) -> int | None:
    """The first integer path component of a parameter name (the layer index), if any."""
    m = _LAYER_RE.search(param_name)
    return int(m.group(1)) if m else None


class Delta:
    """Parameter name -> update, plus metadata (editor, hyperparameters, model fingerprint)."""

    def __init__(
        self,
        updates: dict[str, Update] | None = None,
        metadata: dict[str, Any] | None = None,
        codebooks: dict[str, Codebook] | None = None,
    ) -> None:
        self.updates: dict[str, Update] = dict(updates or {})
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.codebooks: dict[str, Codebook] = dict(codebooks or {})
        self._backups: dict[int, dict[str, torch.Tensor]] = {}
        self._hooks: dict[int, list[Any]] = {}

    # -- inspection ---------------------------------------------------------------------------
    def __repr__(self) -> str:
        parts = [
            f"{n}: {'lowrank r=' + str(u.rank) if isinstance(u, LowRank) else 'dense'}"
            f" {tuple(u.shape)}"
            for n, u in self.updates.items()
        ] + [f"{n}: codebook n={len(c)}" for n, c in self.codebooks.items()]
        return f"Delta({', '.join(parts)})"

    def __len__(self) -> int:
        return len(self.updates) + len(self.codebooks)

    def __iter__(self) -> Iterator[str]:
        return iter(self.updates)

    @property
    def names(self) -> list[str]:
        return list(self.updates)

    def layer(self, name: str) -> int | None:
        """The layer of parameter `name`: the architecture table's index when the delta
        carries one (metadata `layers`, set by the family that made the edit), else the
        first integer of the name."""
        table = self.metadata.get("layers") or {}
        return table[name] if name in table else layer_of(name)

    @property
    def layers(self) -> list[int]:
        edited = [*self.updates, *self.codebooks]
        return sorted({ly for n in edited if (ly := self.layer(n)) is not None})

    @property
    def missed(self) -> list[dict[str, Any]]:
        """The requests whose edit did not take, as `editrisk.edit` (or `editrisk edit`)
        checked them when the delta was made (`metadata['check']`; editrisk.api.MISS_RULE);
        empty when unchecked."""
        check = self.metadata.get("check") or {}
        return [o for o in check.get("requests", []) if not o.get("took")]

    def with_layers(self, layer_index: Callable[[str], int | None]) -> Delta:
        """This delta, its parameters and codebooks labelled with the layer index
        `layer_index` gives."""
        table = {n: layer_index(n) for n in [*self.updates, *self.codebooks]}
        return self._derive(dict(self.updates), layers=table)

    def dense(self, name: str) -> torch.Tensor:
        return _dense(self.updates[name])

    def is_finite(self) -> bool:
        return all(
            torch.isfinite(t).all()
            for u in self.updates.values()
            for t in ((u.left, u.right) if isinstance(u, LowRank) else (u,))
        ) and all(torch.isfinite(t).all() for c in self.codebooks.values() for t in c.tensors())

    # -- pure transformations -----------------------------------------------------------------
    def _derive(
        self, updates: dict[str, Update], codebooks: dict[str, Codebook] | None = None, **meta: Any
    ) -> Delta:
        books = self.codebooks if codebooks is None else codebooks
        return Delta(updates, {**self.metadata, **meta}, books)

    def scale(self, alpha: float) -> Delta:
        """alpha * delta (for low-rank updates only the left factor is scaled; a codebook's
        replacements move alpha of the way from the unedited outputs to its values)."""
        return self._derive(
            {
                n: LowRank(u.left * alpha, u.right) if isinstance(u, LowRank) else u * alpha
                for n, u in self.updates.items()
            },
            {
                n: Codebook(c.keys, c.values, c.radii, c.ids, c.scale * float(alpha))
                for n, c in self.codebooks.items()
            },
            scale=float(alpha) * float(self.metadata.get("scale", 1.0)),
        )

    def restrict(
        self, params: Iterable[str] | None = None, layers: Iterable[int] | None = None
    ) -> Delta:
        """Keep only the named parameters (or codebooks) and/or those of the given layers."""
        keep = set(self.updates) | set(self.codebooks)
        if params is not None:
            wanted = set(params)
            missing = wanted - keep
            if missing:
                raise KeyError(f"delta has no update for {sorted(missing)}; it has {self.names}")
            keep &= wanted
        if layers is not None:
            wanted_layers = set(layers)
            keep = {n for n in keep if self.layer(n) in wanted_layers}
        return self._derive(
            {n: u for n, u in self.updates.items() if n in keep},
            {n: c for n, c in self.codebooks.items() if n in keep},
            restricted_to=sorted(keep),
        )

    def __add__(self, other: Delta) -> Delta:
        out: dict[str, Update] = dict(self.updates)
        for n, u in other.updates.items():
            if n not in out:
                out[n] = u
            elif isinstance(out[n], LowRank) and isinstance(u, LowRank):
                a, b = out[n], u
                out[n] = LowRank(torch.cat([a.left, b.left], 1), torch.cat([a.right, b.right], 1))
            else:
                out[n] = _dense(out[n]) + _dense(u)
        books = dict(self.codebooks)
        for n, c in other.codebooks.items():
            books[n] = books[n].merge(c) if n in books else c
        meta: dict[str, Any] = {
            "composed_of": [self.metadata.get("editor"), other.metadata.get("editor")]
        }
        layers = merged_layers(self.metadata.get("layers"), other.metadata.get("layers"))
        if layers:
            meta["layers"] = layers
        return Delta(out, meta, books)

    def to_dense(self) -> Delta:
        return self._derive({n: _dense(u) for n, u in self.updates.items()})

    # -- model interaction --------------------------------------------------------------------
    def _check(self, model: nn.Module) -> dict[str, nn.Parameter]:
        params = dict(model.named_parameters())
        for n, u in self.updates.items():
            if n not in params:
                raise EditriskError(f"delta updates '{n}', which the model does not have")
            if tuple(u.shape) != tuple(params[n].shape):
                raise EditriskError(
                    f"delta for '{n}' has shape {tuple(u.shape)}, parameter has "
                    f"{tuple(params[n].shape)}"
                )
        modules = dict(model.named_modules())
        for n in self.codebooks:
            if n not in modules:
                raise EditriskError(f"delta has a codebook at '{n}', which the model does not have")
        if not self.is_finite():
            raise EditriskError("delta contains NaN or inf; refusing to apply it")
        return params

    @torch.no_grad()
    def apply(self, model: nn.Module, *, backup: bool = True) -> nn.Module:
        """Add the update in place (cast to each parameter's dtype/device).

        With `backup`, the touched weights are kept so `revert` restores them bitwise; without
        it, `revert` subtracts (exact up to rounding), which sequential runs use to save memory.
        """
        params = self._check(model)
        if backup and id(model) in self._backups:
            raise EditriskError("this delta is already applied to this model; revert first")
        new = self._edited(params)
        if backup:
            self._backups[id(model)] = {n: params[n].detach().clone() for n in self.updates}
        for n, w in new.items():
            params[n].copy_(w)
        self._hooks.setdefault(id(model), []).extend(
            model.get_submodule(n).register_forward_hook(c) for n, c in self.codebooks.items()
        )
        return model

    def _edited(self, params: dict[str, nn.Parameter]) -> dict[str, torch.Tensor]:
        """The touched weights with the update added in their own dtype, refused when one
        would hold inf or NaN (a finite update can overflow a float16 weight)."""
        new = {}
        for n, u in self.updates.items():
            p = params[n]
            new[n] = p + _dense(u).to(device=p.device, dtype=torch.float32).to(p.dtype)
            if not torch.isfinite(new[n]).all():
                raise EditriskError(
                    f"'{n}' would hold inf or NaN once the delta is added in {p.dtype} "
                    "(out of the dtype's range); refusing to apply it"
                )
        return new

    @torch.no_grad()
    def revert(self, model: nn.Module) -> nn.Module:
        """Undo `apply`: restore backed-up weights exactly, else subtract the update;
        remove the codebooks' hooks."""
        for handle in self._hooks.pop(id(model), []):
            handle.remove()
        params = dict(model.named_parameters())
        saved = self._backups.pop(id(model), None)
        for n, u in self.updates.items():
            if saved is not None:
                params[n].copy_(saved[n])
            else:
                p = params[n]
                p.sub_(_dense(u).to(device=p.device, dtype=torch.float32).to(p.dtype))
        return model

    @contextlib.contextmanager
    def applied(self, model: nn.Module) -> Iterator[nn.Module]:
        """`with delta.applied(model):` edits for the block, then restores bitwise."""
        self.apply(model)
        try:
            yield model
        finally:
            self.revert(model)

    # -- norms ----------------------------------------------------------------------------------
    def norms(self, spectral_iters: int = 0) -> dict[str, dict[str, float]]:
        """Per-parameter norms of the update itself."""
        return {
            n: matrix_norms(_dense(u), spectral_iters=spectral_iters)
            for n, u in self.updates.items()
        }

    @torch.no_grad()
    def weight_norms(
        self,
        model: nn.Module,
        spectral_iters: int = 0,
    ) -> dict[str, dict[str, dict[str, float]]]:
        """Norms of the touched weights before ('base') and after ('edited') this delta,
        assuming the model currently holds the base weights."""
        params = dict(model.named_parameters())
        out = {}
        for n, u in self.updates.items():
            w = params[n].detach().to(torch.float32)
            out[n] = {
                "base": matrix_norms(w, spectral_iters=spectral_iters),
                "edited": matrix_norms(
                    w + _dense(u).to(w.device, torch.float32), spectral_iters=spectral_iters
                ),
            }
        return out

    # -- persistence ----------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write as safetensors (atomic); metadata stored as JSON in the header."""
        path = Path(path)
        tensors: dict[str, torch.Tensor] = {}
        for n, u in self.updates.items():
            if isinstance(u, LowRank):
                tensors[f"lowrank_left::{n}"] = u.left.detach().cpu().contiguous()
                tensors[f"lowrank_right::{n}"] = u.right.detach().cpu().contiguous()
            else:
                tensors[f"dense::{n}"] = u.detach().cpu().contiguous()
        for n, c in self.codebooks.items():
            parts = (*c.tensors(), c.ids, torch.tensor(c.scale, dtype=torch.float64))
            for part, t in zip(_BOOK_PARTS, parts):
                tensors[f"codebook_{part}::{n}"] = t.detach().cpu().contiguous()
        meta = {
            "format": "editrisk.delta/1",
            "metadata": json.dumps(self.metadata, sort_keys=True, default=str),
        }
        if path.is_dir():
            raise EditriskError(f"{path} is a folder; give a file name for the delta")
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            save_file(tensors, str(tmp), metadata=meta)
            tmp.replace(path)
        except (OSError, SafetensorError) as err:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            if isinstance(err, OSError):
                raise FileError.of(err, path) from None
            raise FileError(f"cannot write {path}: {' '.join(str(err).split())}") from None
        return path

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> Delta:
        """Read a Delta written by `save`; anything else is an `InputError` naming the file
        and the tensor key or metadata field at fault."""
        path = Path(path)
        if not path.is_file():
            raise InputError("delta file not found", file=str(path))
        try:
            with safe_open(str(path), framework="pt", device=str(device)) as f:
                header = f.metadata() or {}
                if header.get("format") != "editrisk.delta/1":
                    raise InputError(
                        f"not an editrisk delta (format {header.get('format')!r})", file=str(path)
                    )
                raw = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        except (OSError, ValueError, SafetensorError) as err:
            msg = " ".join(str(err).split())
            raise InputError(f"unreadable safetensors file ({msg})", file=str(path)) from None
        try:
            metadata = json.loads(header.get("metadata", "{}"))
        except json.JSONDecodeError as err:
            raise InputError(f"not JSON ({err.msg})", file=str(path), field="metadata") from None
        if not isinstance(metadata, dict):
            raise InputError("expected a JSON object", file=str(path), field="metadata")
        layers = metadata.get("layers")
        if isinstance(layers, dict) and not all(
            v is None or type(v) is int for v in layers.values()
        ):
            raise InputError("expected parameter -> layer index", file=str(path),
                             field="metadata.layers")  # fmt: skip
        if not isinstance(layers, (dict, list, type(None))):
            raise InputError("expected a list or an object", file=str(path),
                             field="metadata.layers")  # fmt: skip
        if not isinstance(metadata.get("model_fingerprint", ""), (str, type(None))):
            raise InputError("expected a string", file=str(path),
                             field="metadata.model_fingerprint")  # fmt: skip
        books = _codebooks(raw, str(path))  # takes the codebook tensors out of `raw`
        return cls(_updates(raw, str(path)), metadata, books)

    @torch.no_grad()
    def check_applies(self, model: nn.Module, fingerprint: str, source: str) -> None:
        """Everything `apply` would refuse, checked before a command writes anything, with
        `source` (the delta's file) named: a model other than the one the delta was computed
        on (an edited model would get the edit twice), parameters or shapes the model lacks,
        values that are not finite in the model's dtype."""
        fp = self.metadata.get("model_fingerprint")
        if fp and fp != fingerprint:
            raise EditriskError(
                f"{source} was computed on model {fp}, not on this model ({fingerprint}); "
                "was the edit already applied?"
            )
        try:
            self._edited(self._check(model))
        except EditriskError as err:
            raise EditriskError(f"{source}: {err}") from None


_KINDS = ("dense", "lowrank_left", "lowrank_right")
_BOOK_PARTS = ("keys", "values", "radii", "ids", "scale")


def _codebooks(raw: dict[str, torch.Tensor], file: str) -> dict[str, Codebook]:
    """The codebooks of a delta file (keys `codebook_<part>::module`), removed from `raw`."""
    names = {k.partition("::")[2] for k in raw if k.startswith("codebook_")}
    books = {}
    for name in sorted(names):
        parts = {p: raw.pop(f"codebook_{p}::{name}", None) for p in _BOOK_PARTS}
        missing = [p for p, t in parts.items() if t is None]
        if missing:
            raise InputError(f"codebook without its {missing}", file=file,
                             field=f"codebook_*::{name}")  # fmt: skip
        if parts["ids"].dtype != torch.int64 or not all(
            parts[p].is_floating_point() for p in _BOOK_PARTS if p != "ids"
        ):
            raise InputError("codebook ids must be int64, its other parts floating point",
                             file=file, field=f"codebook_*::{name}")  # fmt: skip
        try:
            books[name] = Codebook(parts["keys"], parts["values"], parts["radii"], parts["ids"],
                                   float(parts["scale"]))  # fmt: skip
        except (ValueError, RuntimeError) as err:
            raise InputError(str(err), file=file, field=f"codebook_*::{name}") from None
    return books


def _updates(raw: dict[str, torch.Tensor], file: str) -> dict[str, Update]:
    """The updates of a delta file's tensors (keys `kind::parameter`), checked."""
    updates: dict[str, Update] = {}
    for key, t in raw.items():
        kind, sep, name = key.partition("::")
        if not sep or kind not in _KINDS or not name:
            raise InputError(f"tensor key must be one of {_KINDS} '::' a parameter name",
                             file=file, field=key)  # fmt: skip
        if not t.is_floating_point():
            raise InputError(f"expected a floating-point tensor, got {t.dtype}",
                             file=file, field=key)  # fmt: skip
        other = {"lowrank_left": "lowrank_right", "lowrank_right": "lowrank_left"}.get(kind)
        if other and f"{other}::{name}" not in raw:
            raise InputError(f"low-rank factor without its {other} pair", file=file, field=key)
        if kind == "dense":
            if f"lowrank_left::{name}" in raw:
                raise InputError("both dense and low-rank updates", file=file, field=key)
            updates[name] = t
        elif kind == "lowrank_left":
            try:
                updates[name] = LowRank(t, raw[f"lowrank_right::{name}"])
            except ValueError as err:
                raise InputError(str(err), file=file, field=key) from None
    return updates
