"""RippleEdits (the ripple effects of an edit, Cohen et al. 2023) -> `EditRequest`.

Each record: `edit` {`prompt` (the new fact as a sentence: "The name of the country of
citizenship of Leonardo DiCaprio is Syria."), `relation`, optional `original_fact` {`prompt`}
(the old fact, same sentence up to the object), optional `subject` (the subject's label; some
copies add it)} and six criteria, each a list of tests whose `test_queries` hold a `prompt`
and `answers` [{`value`, `aliases`}].

The shared start of the new and old sentence is the rewrite prompt; the rest, less the final
period, are target_new and target_true. Without `edit.subject`, the subject is what follows
the relation's words ("country of citizenship of ...") or the last " of " up to a final
"is"/"are"/"was"/"were". Criteria map to question kinds: Logical_Generalization and
Compositionality_I/II -> `portability`, Relation_Specificity (also spelled
Relation_Specifity) and Forgetfulness -> `subject_other` (the wanted answer is the query's
first answer; the others and every alias count as stating it); Subject_Aliasing prompts are
paraphrases. Condition queries (the model's prior knowledge) are not read.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from editrisk.data._records import Record, iter_records
from editrisk.requests import EditRequest, validate_requests

CRITERIA = {
    "Logical_Generalization": "portability",
    "Compositionality_I": "portability",
    "Compositionality_II": "portability",
    "Relation_Specificity": "subject_other",
    "Relation_Specifity": "subject_other",
    "Forgetfulness": "subject_other",
    "Subject_Aliasing": "paraphrase",
}
_COPULA = re.compile(r"\s+(?:is|are|was|were)$")


def _split(new: str, old: str) -> tuple[str, str, str]:
    """(shared prompt, new object, old object) of two sentences that differ in the object."""
    new, old = new.strip().removesuffix("."), old.strip().removesuffix(".")
    n = 0
    while n < min(len(new), len(old)) and new[n] == old[n]:
        n += 1
    copulas = list(re.finditer(r"\s(?:is|are|was|were)(?=\s)", new[:n]))
    # objects may share words ("United Kingdom", "United States"): cut after the copula
    n = copulas[-1].end() if copulas else new.rfind(" ", 0, n + 1)
    return new[:n].strip(), new[n:].strip(), old[n:].strip()


def _subject(prompt: str, relation: str) -> str | None:
    """The subject inside a relation's cloze prompt, if it can be placed."""
    body = _COPULA.sub("", prompt)
    words = relation.replace("_", " ").lower() + " of "
    at = body.lower().find(words)
    if at >= 0:
        return body[at + len(words) :].strip() or None
    at = body.rfind(" of ")
    return body[at + 4 :].strip() or None if at >= 0 else None


def rippleedits_request(data: Any, *, file: str = "<memory>", record: int = 0) -> EditRequest:
    """One RippleEdits record as an `EditRequest` (InputError on malformed input)."""
    rec = Record(data, file, record)
    edit = rec.get("edit", dict)
    sentence = rec.text("prompt", within=edit, name="edit.prompt")
    relation = rec.text("relation", within=edit, name="edit.relation")
    original = rec.get("original_fact", dict, default=None, within=edit, name="edit.original_fact")
    if original is not None:
        before = rec.text("prompt", within=original, name="edit.original_fact.prompt")
        cloze, target_new, target_true = _split(sentence, before)
        if not (cloze and target_new and target_true) or target_new == target_true:
            rec.fail("the new and the original fact do not differ in their object", "edit.prompt")
    else:
        rec.fail("needs original_fact to tell the prompt from the new object", "edit")
    subject = rec.get("subject", str, default=None, within=edit, name="edit.subject")
    subject = subject or _subject(cloze, relation)
    if not subject or cloze.count(subject) != 1:
        rec.fail(f"cannot place the subject in {cloze!r}; give edit.subject", "edit.prompt")
    questions, paraphrases, aliases = [], [], {}
    for key, kind in CRITERIA.items():
        for t, test in enumerate(rec.get(key, list, default=[])):
            where = f"{key}[{t}]"
            if not isinstance(test, dict):
                rec.fail(f"expected a JSON object, got {type(test).__name__}", where)
            for j, query in enumerate(rec.get("test_queries", list, within=test, name=where)):
                qwhere = f"{where}.test_queries[{j}]"
                if not isinstance(query, dict):
                    rec.fail(f"expected a JSON object, got {type(query).__name__}", qwhere)
                prompt = rec.text("prompt", within=query, name=f"{qwhere}.prompt")
                names = []
                for a, answer in enumerate(rec.get("answers", list, within=query, name=qwhere)):
                    awhere = f"{qwhere}.answers[{a}]"
                    if not isinstance(answer, dict):
                        rec.fail(f"expected a JSON object, got {type(answer).__name__}", awhere)
                    names.append(rec.text("value", within=answer, name=f"{awhere}.value"))
                    names += rec.strings("aliases", within=answer, name=f"{awhere}.aliases")
                if not names:
                    rec.fail("lists no answer", f"{qwhere}.answers")
                if kind == "paraphrase":
                    paraphrases.append(prompt)
                    continue
                questions.append({"kind": kind, "prompt": prompt, "target": names[0]})
                aliases.setdefault(names[0], [])
                aliases[names[0]] += [n for n in names[1:] if n not in aliases[names[0]]]
    d = {
        "subject": subject,
        "prompt": cloze.replace(subject, "{}"),
        "target_new": target_new,
        "target_true": target_true,
        "paraphrases": list(dict.fromkeys(paraphrases)),
        "id": f"rippleedits/{record}",
        "relation": relation,
        "questions": questions,
        "aliases": {k: v for k, v in aliases.items() if v},
        "extra": {"example_type": rec.get("example_type", str, default="")},
    }
    return EditRequest.from_dict(d, file=file, record=record)


def iter_rippleedits(path: str | Path) -> Iterator[EditRequest]:
    """Stream requests from a RippleEdits file (JSON array or JSON lines)."""
    for i, data in iter_records(path):
        yield rippleedits_request(data, file=str(path), record=i)


def load_rippleedits(path: str | Path, limit: int | None = None) -> list[EditRequest]:
    """All (or the first `limit`) requests of a RippleEdits file, validated together."""
    out = []
    for r in iter_rippleedits(path):
        if limit is not None and len(out) >= limit:
            break
        out.append(r)
    return validate_requests(out, file=str(path))
