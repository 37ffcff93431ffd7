"""editrisk: edit trained networks and measure what each edit costs."""

from editrisk.api import edit, export_model
from editrisk.delta import Delta, LowRank
from editrisk.errors import EditriskError, InputError
from editrisk.hooks import StopForward, Trace
from editrisk.models import ModelHandle, load_model
from editrisk.requests import EditRequest, Neighbour
from editrisk.settings import cache_dir

__version__ = "0.1.0"

__all__ = [
    "Delta",
    "EditRequest",
    "EditriskError",
    "InputError",
    "LowRank",
    "ModelHandle",
    "Neighbour",
    "StopForward",
    "Trace",
    "cache_dir",
    "edit",
    "export_model",
    "load_model",
    "__version__",
]
