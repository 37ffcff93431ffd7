"""Edit requests for language models: the case to edit, its paraphrases and neighbours.

Targets are stored bare ("Paris"); they are tokenized as a continuation of the prompt, with a
leading space (see `editrisk.editing.tokens.target_ids`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from editrisk.errors import InputError


@dataclass(frozen=True)
class Neighbour:
    """A prompt about another subject and the answer the edit must leave untouched."""

    prompt: str
    target: str


QUESTION_KINDS = ("portability", "reverse", "subject_other")


@dataclass(frozen=True)
class Question:
    """A question about an edit's consequences, with the answer the edited model should give.

    `kind`: `portability` (the answer must change with the edit: a one- or multi-hop
    consequence), `reverse` (the edit read backwards, for a one-to-one relation) or
    `subject_other` (another attribute of the subject, which must not change). `unwanted` is
    the answer it must beat (the pre-edit answer, or a same-relation alternative)."""

    kind: str
    prompt: str
    target: str
    unwanted: str | None = None


@dataclass(frozen=True)
class EditRequest:
    """One edit: make `prompt.format(subject)` continue with `target_new`.

    `prompt` is a template with one `{}` for the subject. `paraphrases` and
    `generation_prompts` are full prompts (subject already in place). `questions` measure the
    edit's consequences; `aliases` maps an answer to other names that count as stating it in
    generated text.
    """

    subject: str
    prompt: str
    target_new: str
    target_true: str | None = None
    paraphrases: tuple[str, ...] = ()
    neighbours: tuple[Neighbour, ...] = ()
    generation_prompts: tuple[str, ...] = ()
    id: str = ""
    relation: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    questions: tuple[Question, ...] = ()
    aliases: dict[str, tuple[str, ...]] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        self.validate()

    @property
    def rendered(self) -> str:
        """The edited prompt with the subject in place."""
        return self.prompt.replace("{}", self.subject)

    def validate(self, *, file: str | None = None, record: int | None = None) -> None:
        def fail(msg: str, fld: str) -> None:
            raise InputError(msg, file=file, record=record, field=fld)

        if not isinstance(self.subject, str) or not self.subject.strip():
            fail("subject is empty", "subject")
        if not isinstance(self.prompt, str) or self.prompt.count("{}") != 1:
            fail(f"prompt template must contain '{{}}' exactly once: {self.prompt!r}", "prompt")
        if not isinstance(self.target_new, str) or not self.target_new.strip():
            fail("target_new is empty", "target_new")
        if self.target_true is not None and (
            not isinstance(self.target_true, str) or not self.target_true.strip()
        ):
            fail("target_true is empty", "target_true")
        if self.target_true is not None and self.target_true.strip() == self.target_new.strip():
            fail("target_new equals target_true: nothing to edit", "target_new")
        for i, n in enumerate(self.neighbours):
            if not isinstance(n, Neighbour) or not n.prompt.strip() or not n.target.strip():
                fail(f"neighbour {i} needs a prompt and a target", "neighbours")
        for i, q in enumerate(self.questions):
            if (
                not isinstance(q, Question)
                or q.kind not in QUESTION_KINDS
                or not all(isinstance(x, str) and x.strip() for x in (q.prompt, q.target))
                or not (q.unwanted is None or isinstance(q.unwanted, str) and q.unwanted.strip())
            ):
                fail(
                    f"question {i} needs a kind in {list(QUESTION_KINDS)}, a prompt, a target "
                    "and an optional non-empty unwanted answer",
                    "questions",
                )
        for answer, names in self.aliases.items():
            if not isinstance(names, tuple) or not all(isinstance(x, str) for x in names):
                fail(f"aliases of {answer!r} must be a list of strings", "aliases")

    def forms(self, answer: str) -> tuple[str, ...]:
        """`answer` and its aliases: every name that counts as stating it."""
        return (answer, *self.aliases.get(answer, ()))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["neighbours"] = [asdict(n) for n in self.neighbours]
        d["paraphrases"] = list(self.paraphrases)
        d["generation_prompts"] = list(self.generation_prompts)
        d["questions"] = [asdict(q) for q in self.questions]
        d["aliases"] = {k: list(v) for k, v in self.aliases.items()}
        for key in ("questions", "aliases", "extra"):
            if not d[key]:
                d.pop(key)
        return d

    @classmethod
    def from_dict(
        cls, d: dict[str, Any], *, file: str | None = None, record: int | None = None
    ) -> EditRequest:
        """Build from editrisk's JSON form; errors name the file, record and field."""
        if not isinstance(d, dict):
            raise InputError("expected a JSON object", file=file, record=record)
        for key in ("subject", "prompt", "target_new"):
            if key not in d:
                raise InputError("missing required field", file=file, record=record, field=key)
        known = {
            "subject",
            "prompt",
            "target_new",
            "target_true",
            "paraphrases",
            "neighbours",
            "generation_prompts",
            "id",
            "relation",
            "questions",
            "aliases",
            "extra",
        }
        unknown = set(d) - known
        if unknown:
            raise InputError(
                f"unknown field(s) {sorted(unknown)}",
                file=file,
                record=record,
                field=sorted(unknown)[0],
            )

        def strs(key: str) -> tuple[str, ...]:
            v = d.get(key) or []
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                raise InputError("expected a list of strings", file=file, record=record, field=key)
            return tuple(v)

        def fail(msg: str, fld: str) -> None:
            raise InputError(msg, file=file, record=record, field=fld)

        raw_neighbours = d.get("neighbours") or []
        if not isinstance(raw_neighbours, list):
            fail("expected a list of {prompt, target} objects", "neighbours")
        neighbours = []
        for i, n in enumerate(raw_neighbours):
            if not isinstance(n, dict) or set(n) != {"prompt", "target"}:
                fail(f"neighbour {i} must be an object with prompt and target", "neighbours")
            if not all(isinstance(n[k], str) for k in ("prompt", "target")):
                fail(f"neighbour {i}: prompt and target must be strings", "neighbours")
            neighbours.append(Neighbour(n["prompt"], n["target"]))
        raw_questions = d.get("questions") or []
        if not isinstance(raw_questions, list):
            fail("expected a list of {kind, prompt, target, unwanted} objects", "questions")
        questions = []
        for i, q in enumerate(raw_questions):
            if (
                not isinstance(q, dict)
                or not {"kind", "prompt", "target"} <= set(q)
                or not set(q) <= {"kind", "prompt", "target", "unwanted"}
            ):
                fail(f"question {i} must be an object with kind, prompt, target", "questions")
            if not all(isinstance(q.get(k, ""), str) for k in ("kind", "prompt", "target")):
                fail(f"question {i}: kind, prompt and target must be strings", "questions")
            questions.append(Question(q["kind"], q["prompt"], q["target"], q.get("unwanted")))
        raw_aliases = d.get("aliases") or {}
        if not isinstance(raw_aliases, dict) or not all(
            isinstance(v, list) and all(isinstance(x, str) for x in v) for v in raw_aliases.values()
        ):
            fail("expected an object of answer -> list of strings", "aliases")
        for key in ("subject", "prompt", "target_new", "target_true", "relation"):
            v = d.get(key)
            if not isinstance(v, str) and (
                v is not None or key in ("subject", "prompt", "target_new")
            ):
                fail(f"expected a string, got {type(v).__name__}", key)
        rid = d.get("id", "")
        if isinstance(rid, bool) or not isinstance(rid, (str, int)):
            fail(f"expected a string or an integer, got {type(rid).__name__}", "id")
        if not isinstance(d.get("extra") or {}, dict):
            fail(f"expected an object, got {type(d['extra']).__name__}", "extra")
        req = object.__new__(cls)
        values = dict(
            subject=d["subject"],
            prompt=d["prompt"],
            target_new=d["target_new"],
            target_true=d.get("target_true"),
            paraphrases=strs("paraphrases"),
            neighbours=tuple(neighbours),
            generation_prompts=strs("generation_prompts"),
            id=str(rid),
            relation=d.get("relation"),
            questions=tuple(questions),
            aliases={k: tuple(v) for k, v in raw_aliases.items()},
            extra=dict(d.get("extra") or {}),
        )
        for k, v in values.items():
            object.__setattr__(req, k, v)
        req.validate(file=file, record=record)
        return req


def validate_requests(
    requests: Sequence[EditRequest] | Iterable[EditRequest], file: str | None = None
) -> list[EditRequest]:
    """Check a set of requests together: ids must be unique (empty ids are numbered)."""
    out: list[EditRequest] = []
    seen: dict[str, int] = {}
    for i, r in enumerate(requests):
        if not isinstance(r, EditRequest):
            raise InputError(
                f"expected an EditRequest, got {type(r).__name__}", file=file, record=i
            )
        rid = r.id or str(i)
        if rid in seen:
            raise InputError(
                f"duplicated id '{rid}' (first at record {seen[rid]})",
                file=file,
                record=i,
                field="id",
            )
        seen[rid] = i
        if not r.id:
            object.__setattr__(r, "id", rid)
        out.append(r)
    return out
