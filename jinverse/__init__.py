"""jinverse: a JAX engine for inverse problems."""

from . import bijectors as bijectors
from . import likelihoods as likelihoods
from . import priors as priors
from . import problems as problems
from .problem import InverseProblem as InverseProblem
from .problem import MatrixOperator as MatrixOperator
from .problems import Benchmark as Benchmark

__version__ = "0.1.0"
