"""editrisk: edit trained networks and measure what each edit costs."""

from editrisk.delta import Delta, LowRank
from editrisk.errors import EditriskError, InputError
from editrisk.hooks import StopForward, Trace
from editrisk.models import ModelHandle, load_model
from editrisk.settings import cache_dir

__version__ = "0.1.0"

__all__ = [
    "Delta",
    "EditriskError",
    "InputError",
    "LowRank",
    "ModelHandle",
    "StopForward",
    "Trace",
    "cache_dir",
    "load_model",
    "__version__",
]
