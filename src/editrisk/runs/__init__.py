"""Run directories and result stores."""

from editrisk.runs.store import ResultStore, RunDir, atomic_write_text, environment

__all__ = ["ResultStore", "RunDir", "atomic_write_text", "environment"]
