"""Built-in benchmark problems (``ji.problems``): ``names()``, ``load(name, **options)``."""

from . import classical as classical
from . import dynamics as dynamics
from . import imaging as imaging
from . import metrics as metrics
from . import pde as pde
from . import sbi as sbi
from . import trained as trained
from ._evaluate import evaluate as evaluate
from ._registry import Benchmark as Benchmark
from ._registry import load as load
from ._registry import names as names
from ._registry import register as register
from .dynamics import cycled_4dvar as cycled_4dvar
