"""Prior distributions over θ (``ji.priors``).

Every prior is an `equinox.Module` with ``log_prob(theta)``, ``sample(key, shape)``, the
``event_shape`` of one θ, a ``center()`` (a sensible starting point) and a ``bijector`` that
maps an unconstrained space onto its support. `Joint` combines priors over the leaves of a
pytree θ. Regularising priors (smoothness, total variation) live in `jinverse.regularizers`
and are re-exported here.

On the real line: `Gaussian`, `Laplace`, `Cauchy`, `StudentT`; positive: `LogNormal`,
`HalfNormal`, `HalfCauchy`, `Exponential`, `Gamma`, `InverseGamma`; bounded: `Uniform`, `Beta`,
`TruncatedNormal` (either bound may be infinite); improper: `Flat` (optionally half-bounded,
``is_proper`` False: it has no draws, so solvers need an ``init``).

The families live in submodules: `base` (`AbstractPrior`, `AbstractLocationScale`,
`AbstractPositive`), `gaussian`, `location_scale`, `positive`, `bounded`, `joint`; writing your
own prior is described in ``docs/extending.md``.
"""

from ..bijectors import Interval as Interval
from .base import AbstractLocationScale as AbstractLocationScale
from .base import AbstractPositive as AbstractPositive
from .base import AbstractPrior as AbstractPrior
from .bounded import Beta as Beta
from .bounded import Flat as Flat
from .bounded import Uniform as Uniform
from .gaussian import Gaussian as Gaussian
from .gaussian import HalfNormal as HalfNormal
from .gaussian import LogNormal as LogNormal
from .gaussian import TruncatedNormal as TruncatedNormal
from .joint import Joint as Joint
from .location_scale import Cauchy as Cauchy
from .location_scale import Laplace as Laplace
from .location_scale import StudentT as StudentT
from .positive import Exponential as Exponential
from .positive import HalfCauchy as HalfCauchy
from .positive import InverseGamma as InverseGamma

# Last: `jinverse.regularizers` imports `base`, and imports `jinverse.linear`, which needs `Gaussian` above.
# isort: split
from ..regularizers import GMRF as GMRF
from ..regularizers import Gamma as Gamma
from ..regularizers import SparseL1 as SparseL1
from ..regularizers import TotalVariation as TotalVariation
