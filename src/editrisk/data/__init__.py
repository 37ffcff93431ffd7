"""Edit datasets: loaders for public formats, editrisk's JSONL, WorldFacts and the MQD builder."""

from editrisk.data.counterfact import load_counterfact
from editrisk.data.formats import detect_format, load_requests
from editrisk.data.jsonl import read_jsonl, write_jsonl
from editrisk.data.mquake import load_mquake
from editrisk.data.rippleedits import load_rippleedits
from editrisk.data.zsre import load_zsre

__all__ = [
    "detect_format",
    "load_counterfact",
    "load_mquake",
    "load_requests",
    "load_rippleedits",
    "load_zsre",
    "read_jsonl",
    "write_jsonl",
]
