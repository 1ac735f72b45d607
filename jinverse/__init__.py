"""jinverse: a JAX engine for inverse problems.

Every public name below is imported on first use (PEP 562's module ``__getattr__``): ``ji.sample``,
``from jinverse import sample`` and ``ji.problems`` work as usual, while ``import jinverse`` itself
imports nothing heavy, so a command or script pays only for what it touches (blackjax for a
sampler, jax.experimental.sparse for a sparse problem, ...: benchmarks/RESULTS.md, "Start-up and
compilation"). `tests/test_imports.py` checks that every name resolves.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

# imported now, not on first use: importing the module `jinverse.laplace` later (as `jinverse.bench`
# does) would bind ``ji.laplace`` to that module instead of this function
from .laplace import laplace as laplace

__version__ = "0.1.0"

#: the subpackages and modules reachable as ``ji.<name>``
_MODULES = (
    "amortized",
    "assimilation",
    "bijectors",
    "diagnostics",
    "evidence",
    "hierarchical",
    "implicit",
    "likelihoods",
    "linear",
    "plots",
    "priors",
    "problems",
    "proximal",
    "status",
    "steps",
    "tempering",
)

#: public name -> the module that defines it
_NAMES = {
    "EmpiricalBayesResult": "evidence",
    "Evidence": "evidence",
    "empirical_bayes": "evidence",
    "laplace_evidence": "evidence",
    "GaussianApproximation": "laplace",
    "LowRankGaussianApproximation": "lowrank",
    "MAPResult": "map",
    "MAPWarning": "map",
    "Status": "map",
    "solve_map": "map",
    "ModeMixture": "modes",
    "find_modes": "modes",
    "Posterior": "posterior",
    "PriorPredictive": "predictive",
    "prior_predictive": "predictive",
    "InverseProblem": "problem",
    "MatrixOperator": "problem",
    "Benchmark": "problems",
    "load_result": "results",
    "save_result": "results",
    "batch_mesh": "runtime",
    "enable_compilation_cache": "runtime",
    "set_precision": "runtime",
    "sample": "sampling",
    "MAPStatus": "status",
    "SamplingStatus": "status",
}

__all__ = sorted([*_MODULES, *_NAMES, "laplace"])


def __getattr__(name: str):
    if name in _MODULES:
        value = importlib.import_module(f"{__name__}.{name}")
    elif name in _NAMES:
        value = getattr(importlib.import_module(f"{__name__}.{_NAMES[name]}"), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:  # the same names, for type checkers and editors
    from . import amortized as amortized
    from . import assimilation as assimilation
    from . import bijectors as bijectors
    from . import diagnostics as diagnostics
    from . import evidence as evidence
    from . import hierarchical as hierarchical
    from . import implicit as implicit
    from . import likelihoods as likelihoods
    from . import linear as linear
    from . import plots as plots
    from . import priors as priors
    from . import problems as problems
    from . import proximal as proximal
    from . import status as status
    from . import steps as steps
    from . import tempering as tempering
    from .evidence import EmpiricalBayesResult as EmpiricalBayesResult
    from .evidence import Evidence as Evidence
    from .evidence import empirical_bayes as empirical_bayes
    from .evidence import laplace_evidence as laplace_evidence
    from .laplace import GaussianApproximation as GaussianApproximation
    from .lowrank import LowRankGaussianApproximation as LowRankGaussianApproximation
    from .map import MAPResult as MAPResult
    from .map import MAPWarning as MAPWarning
    from .map import Status as Status
    from .map import solve_map as solve_map
    from .modes import ModeMixture as ModeMixture
    from .modes import find_modes as find_modes
    from .posterior import Posterior as Posterior
    from .predictive import PriorPredictive as PriorPredictive
    from .predictive import prior_predictive as prior_predictive
    from .problem import InverseProblem as InverseProblem
    from .problem import MatrixOperator as MatrixOperator
    from .problems import Benchmark as Benchmark
    from .results import load_result as load_result
    from .results import save_result as save_result
    from .runtime import batch_mesh as batch_mesh
    from .runtime import enable_compilation_cache as enable_compilation_cache
    from .runtime import set_precision as set_precision
    from .sampling import sample as sample
    from .status import MAPStatus as MAPStatus
    from .status import SamplingStatus as SamplingStatus
