"""Study configs: one schema for every study of either family (protocol runs, 1-LI grids,
the vision study, the demo), validated before anything is written.

A config names a family, a model, the edit sets, a protocol, an evaluation schedule and a grid
(editor x layer x alpha x seed x edit set). Its `data`, `model` and `evaluation` sections are
the family's own and are validated by the family's schema. An error names the file and the
key and suggests the closest known key.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from editrisk.errors import EditriskError, InputError
from editrisk.settings import read_config_file

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}$")


class Section(BaseModel):
    """A config section: unknown keys are errors, values are checked on assignment too and
    never coerced (a quoted "2" is not a number, 2.5 not an integer)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, strict=True)

    # Fields added after run directories were written: left out of every dump (the stored
    # config.yaml a resumed run is compared with) while they hold their default, so a config
    # that does not use them resolves to exactly what it resolved to before they existed.
    OMIT_AT_DEFAULT: ClassVar[frozenset[str]] = frozenset()

    @model_serializer(mode="wrap")
    def _omit_new_defaults(self, handler: Any) -> Any:
        out = handler(self)
        for name in self.OMIT_AT_DEFAULT:
            field = type(self).model_fields[name]
            if getattr(self, name) == field.get_default(call_default_factory=True):
                out.pop(name, None)
        return out


def safe_name(value: str, what: str) -> str:
    """A user-typed name that later becomes a folder name: letters, digits, `_.+-`."""
    if not isinstance(value, str) or not SAFE_NAME.match(value) or ".." in value:
        raise ValueError(
            f"{what} {value!r} must be 1-100 letters, digits or _.+- (it names a folder)"
        )
    return value


class MethodSpec(Section):
    name: str = Field(description="registered editor name")
    label: str | None = Field(None, description="label in rows and plots (default: name)")
    hparams: dict[str, Any] = Field(default_factory=dict, description="editor hyperparameters")

    @field_validator("label")
    @classmethod
    def _label(cls, v: str | None) -> str | None:
        return None if v is None else safe_name(v, "method label")


class ProtocolSpec(Section):
    name: Literal["single", "batch", "sequential"] = "sequential"
    batch_size: int = Field(1, ge=1, description="edits per step (sequential)")


class ScheduleSpec(Section):
    OMIT_AT_DEFAULT = frozenset(
        {"retention_at", "general_at", "retention_sample", "collapse_perplexity"}
    )

    immediate: bool = Field(True, description="the step's own edits, right after the step")
    final: bool = Field(True, description="every edit, after the last step")
    retention_every: int = Field(0, ge=0, description="all edits so far, every k steps (0 never)")
    general_every: int = Field(0, ge=0, description="general ability every k steps (0 never)")
    retention_at: list[int] = Field(
        default_factory=list,
        description="edits so far (e.g. a log scale 100, 200, 500, ...), after whose step "
        "retention is measured (label retention@edits)",
    )
    general_at: list[int] = Field(
        default_factory=list,
        description="edits so far after whose step general ability is measured (label "
        "general@edits; also once before any edit)",
    )
    retention_sample: int = Field(
        0,
        ge=0,
        description="retention schedules measure a fixed seeded sample of this many of the "
        "edits so far (0: all of them); the row records the sample and a 95% interval",
    )
    collapse_perplexity: float | None = Field(
        None,
        gt=0,
        description="a method whose general-ability perplexity exceeds this is recorded as "
        "collapsed (a row) and stopped (none: never stopped)",
    )

    @field_validator("retention_at", "general_at")
    @classmethod
    def _edit_counts(cls, v: list[int]) -> list[int]:
        if any(k < 1 for k in v):
            raise ValueError(f"edit counts must be >= 1, got {v}")
        if len(set(v)) != len(v):
            raise ValueError(f"has duplicates: {v}")
        return sorted(v)

    @model_validator(mode="after")
    def _collapse_needs_general(self) -> ScheduleSpec:
        if self.collapse_perplexity is not None and not (self.general_every or self.general_at):
            raise ValueError(
                "collapse_perplexity needs perplexity measured: set general_every or general_at"
            )
        return self


class GridSpec(Section):
    layer: list[int | Literal["default"]] = Field(
        default_factory=lambda: ["default"],
        description="editable-layer index of the family's architecture table, or 'default'",
    )
    alpha: list[float] = Field(default_factory=lambda: [1.0], description="1-LI scales in [0, 1]")
    seed: list[int] = Field(default_factory=lambda: [0])
    edit_set: list[str] | None = Field(None, description="default: every defined edit set")
    paths: Literal["all", "each"] = Field(
        "all", description="1-LI: scale the whole edit ('all'), or also each layer alone"
    )

    @field_validator("layer", "alpha", "seed", "edit_set")
    @classmethod
    def _non_empty_unique(cls, v: list[Any] | None) -> list[Any] | None:
        if v is None:
            return v
        if not v:
            raise ValueError("must list at least one value")
        if len({str(x) for x in v}) != len(v):
            raise ValueError(f"has duplicates: {v}")
        return v

    @field_validator("alpha")
    @classmethod
    def _alphas(cls, v: list[float]) -> list[float]:
        if not all(0.0 <= a <= 1.0 for a in v):
            raise ValueError(f"alphas must lie in [0, 1], got {v}")
        return sorted(float(a) for a in v)


class ExecutorSpec(Section):
    kind: Literal["local", "ray"] = "local"
    workers: int = Field(1, ge=1, description="local: jobs at once, in forked processes")
    address: str | None = Field(None, description="ray: cluster address; none starts one")
    num_cpus: float = Field(1, gt=0, description="ray: CPUs per job")
    num_gpus: float = Field(0, ge=0, description="ray: GPUs per job")


class DiagnosticsSpec(Section):
    spectral_iters: int = Field(8, ge=0)
    condition: bool = Field(False, description="condition number of each edited weight (an SVD)")


class LmEvalSpec(Section):
    """lm-evaluation-harness tasks measured with general ability (language family), through
    lm-eval's own HFLM wrapper on the model as it stands; columns lm_eval.<task>.<metric>."""

    tasks: list[str] = Field(min_length=1, description="lm-eval task (or group) names")
    limit: int | float | None = Field(
        None, gt=0, description="documents per task (a fraction when below 1; none: all)"
    )
    num_fewshot: int | None = Field(None, ge=0, description="none: each task's own default")
    batch_size: int = Field(16, ge=1)
    include_path: str | None = Field(None, description="a folder of task YAMLs of your own")


class StudyConfig(Section):
    """A whole study. `data`, `model` and `evaluation` are checked by the family's schema."""

    OMIT_AT_DEFAULT = frozenset({"lm_eval"})

    name: str = "run"
    family: str = "language"
    model: Any = None
    device: str = "cpu"
    dtype: str = "float32"
    data: dict[str, Any] = Field(default_factory=dict)
    edit_sets: dict[str, dict[str, Any]] = Field(default_factory=lambda: {"default": {}})
    protocol: ProtocolSpec = Field(default_factory=ProtocolSpec)
    schedule: ScheduleSpec = Field(default_factory=ScheduleSpec)
    grid: GridSpec = Field(default_factory=GridSpec)
    methods: list[MethodSpec] = Field(default_factory=list)
    evaluation: dict[str, Any] = Field(default_factory=dict)
    diagnostics: DiagnosticsSpec = Field(default_factory=DiagnosticsSpec)
    checkpoint_every: int = Field(1, ge=1)
    executor: ExecutorSpec = Field(default_factory=ExecutorSpec)
    lm_eval: LmEvalSpec | None = Field(None, description="lm-eval tasks with general ability")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return safe_name(v, "run name")

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        from editrisk.settings import resolve_device

        try:
            resolve_device(v)
        except EditriskError as err:
            raise ValueError(str(err)) from None
        return v

    @field_validator("dtype")
    @classmethod
    def _dtype(cls, v: str) -> str:
        from editrisk.settings import resolve_dtype

        try:
            resolve_dtype(v)
        except EditriskError as err:
            raise ValueError(str(err)) from None
        return v

    @field_validator("methods", mode="before")
    @classmethod
    def _methods(cls, v: Any) -> Any:
        if isinstance(v, list):
            return [{"name": m} if isinstance(m, str) else m for m in v]
        return v

    @field_validator("edit_sets")
    @classmethod
    def _edit_sets(cls, v: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for name in v:
            safe_name(name, "edit set name")
        return v

    def labels(self) -> list[str]:
        return [m.label or m.name for m in self.methods]

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def _suggest(loc: tuple[Any, ...], model: type[BaseModel] | None) -> str:
    """' (did you mean 'x'?)' for an unknown key, from the fields of the section it sits in."""
    fields: list[str] = []
    section: Any = model
    for part in loc[:-1]:
        field = getattr(section, "model_fields", {}).get(part) if section else None
        ann = getattr(field, "annotation", None) if field else None
        section = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
    if section is not None:
        fields = list(section.model_fields)
    close = difflib.get_close_matches(str(loc[-1]), fields, n=1)
    known = f"; known: {sorted(fields)}" if fields else ""
    return f" (did you mean '{close[0]}'?)" if close else known


def validation_error(
    err: ValidationError, source: str, model: type[BaseModel] | None, prefix: str = ""
) -> InputError:
    """The first problem of a pydantic error as an `InputError` naming file and key (under
    `prefix`, the section the model validates)."""
    e = err.errors()[0]
    loc = tuple(e["loc"])
    where = ".".join(str(p) for p in (prefix, *loc) if p != "") or None
    if e["type"] == "extra_forbidden":
        return InputError(f"unknown key{_suggest(loc, model)}", file=source, field=where)
    msg = e["msg"].removeprefix("Value error, ")
    return InputError(msg, file=source, field=where)


def parse_section(schema: type[BaseModel], raw: Any, source: str, prefix: str) -> BaseModel:
    """Validate one family section (`data`, `model`, `evaluation`); errors name `prefix.key`."""
    try:
        return schema.model_validate(raw if raw is not None else {})
    except ValidationError as err:
        raise validation_error(err, source, schema, prefix) from None


def resolve(raw: dict[str, Any], source: str = "config") -> StudyConfig:
    """A validated study config with every default filled in (family sections included)."""
    from editrisk.editors import get_editor
    from editrisk.families import get_family

    if not isinstance(raw, dict):
        raise InputError("a study config is a mapping", file=source)
    try:
        cfg = StudyConfig.model_validate(raw)
    except ValidationError as err:
        raise validation_error(err, source, StudyConfig) from None
    family = get_family(cfg.family, source)
    cfg.model = family.resolve_model(cfg.model, source)
    cfg.data = parse_section(family.Data, cfg.data, source, "data").model_dump(mode="json")
    cfg.evaluation = parse_section(
        family.Evaluation, cfg.evaluation, source, "evaluation"
    ).model_dump(mode="json")
    for name, spec in cfg.edit_sets.items():
        es = parse_section(family.EditSet, spec, source, f"edit_sets.{name}")
        cfg.edit_sets[name] = es.model_dump(mode="json")
    if not cfg.methods:
        raise InputError("lists no editor", file=source, field="methods")
    labels: set[str] = set()
    for i, m in enumerate(cfg.methods):
        try:
            m.label = m.label or safe_name(m.name, "editor name")
        except ValueError as err:
            raise InputError(str(err), file=source, field=f"methods[{i}].name") from None
        if m.label in labels:
            raise InputError(f"repeats label {m.label!r}", file=source, field=f"methods[{i}]")
        labels.add(m.label)
        try:
            get_editor(m.name, m.hparams)
        except EditriskError as err:
            raise InputError(str(err), file=source, field=f"methods[{i}].hparams") from None
    if cfg.grid.edit_set is None:
        cfg.grid.edit_set = list(cfg.edit_sets)
    for name in cfg.grid.edit_set:
        if name not in cfg.edit_sets:
            raise InputError(
                f"edit set {name!r} is not defined under edit_sets", file=source, field="grid"
            )
    sched = cfg.schedule
    if cfg.protocol.name == "single" and (
        sched.final or sched.retention_every or sched.retention_at
    ):
        raise InputError(
            "protocol 'single' reverts every edit: only 'immediate' and 'general' schedules "
            "apply (set final: false, retention_every: 0, no retention_at)",
            file=source,
            field="schedule",
        )
    if cfg.lm_eval is not None and (
        cfg.family != "language" or not (sched.general_every or sched.general_at)
    ):
        raise InputError(
            "lm-eval tasks are measured with general ability of a language model: set "
            "schedule.general_every or schedule.general_at",
            file=source,
            field="lm_eval",
        )
    return cfg


def load_config(path: str | Path, **overrides: Any) -> StudyConfig:
    """Read and resolve a YAML study config; `overrides` replace top-level keys first."""
    raw = read_config_file(path)
    raw.update({k: v for k, v in overrides.items() if v is not None})
    return resolve(raw, str(path))
