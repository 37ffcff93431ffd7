"""Editing protocols (single / batch / sequential), evaluation schedules, per-step weight
diagnostics, and the resumable runner behind `editrisk run CONFIG`."""

from editrisk.protocols.diagnostics import step_diagnostics
from editrisk.protocols.plan import PROTOCOLS, Protocol, Schedule, Step
from editrisk.protocols.runner import run_config, run_method

__all__ = [
    "PROTOCOLS",
    "Protocol",
    "Schedule",
    "Step",
    "run_config",
    "run_method",
    "step_diagnostics",
]
