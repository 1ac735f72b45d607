"""jinverse: a JAX engine for inverse problems."""

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
from .laplace import laplace as laplace
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

__version__ = "0.1.0"
