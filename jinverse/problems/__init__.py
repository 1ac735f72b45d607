"""Built-in benchmark problems (``ji.problems``): ``names()``, ``load(name, **options)``."""

from ._registry import Benchmark as Benchmark
from ._registry import load as load
from ._registry import names as names
from ._registry import register as register
from . import classical as classical
