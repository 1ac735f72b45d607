"""One status convention for every result: integer ``status`` codes from one enum family, and an
``ok`` mask that is ``status == OK`` (0) element by element.

Two kinds of result need two kinds of code, so the family has two members, with the same name
(and the meaning that goes with it) wherever a meaning is shared:

- `MAPStatus` (an `enum.IntEnum`: one reason per element) for point estimates and what is built
  on them: `ji.solve_map`, the Laplace approximations, the evidence, `ji.find_modes`,
  `ji.empirical_bayes`, FISTA, the linear solvers, 4D-Var. ``ji.Status`` is this enum.
- `SamplingStatus` (an `enum.IntFlag`: any set of problems per element) for `ji.Posterior`
  (MCMC, SMC, replica exchange), and `FilterStatus` (flags) for cycled ensemble filters.

Shared by both: ``OK = 0`` (nothing wrong, and ``ok`` is True exactly there) and ``NONFINITE``
(NaN/inf in the result). The values of the older enums (`jinverse.map.Status`,
`jinverse.posterior.Status`) are kept, so stored results and status arrays read the same; those
names are aliases of the two classes here. Drivers warn from these codes; the core only sets them.
"""

from __future__ import annotations

import enum

import jax
import jax.numpy as jnp
import numpy as np

OK = 0  # the code of success in every family


class StatusFamily:
    """What every status enumeration of jinverse shares (a mixin of `MAPStatus` and
    `SamplingStatus`): 0 is success, `ok` turns codes into the ``ok`` mask, `describe` reads one."""

    @classmethod
    def ok(cls, codes):
        """The ``ok`` mask of an array of codes (NumPy or JAX): True where the code is ``OK``."""
        return codes == OK

    def describe(self) -> str:
        """A short readable reason for this code (a set of flags: each flag's, joined by "+")."""
        cls, code = type(self), int(self)  # type: ignore[call-overload]  # (an int enum member)
        if (cls, code) in _TEXT:
            return _TEXT[cls, code]
        return " + ".join(text for (c, v), text in _TEXT.items() if c is cls and v and code & v == v)


class MAPStatus(StatusFamily, enum.IntEnum):
    """Why an estimate stopped, per element (``ji.Status``, ``jinverse.map.Status``)."""

    CONVERGED = 0  # gradient norm below tol * (1 + |objective|) (see solve_map's tol)
    OK = 0  # (alias of CONVERGED: the shared name of success)
    MAX_STEPS = 1  # ran out of steps before converging
    NONFINITE = 2  # objective or gradient became NaN/inf (e.g. the forward model failed)
    STALLED = 3  # no decrease of the objective in a step (line search could not progress)
    NOT_POSITIVE_DEFINITE = 4  # the mode was found, the negative Hessian there is not positive definite
    NOT_FOUND = 5  # no result here: a padding slot with no mode, or a failure whose reason was not stored


class SamplingStatus(StatusFamily, enum.IntFlag):
    """Bit flags of `ji.Posterior.status`, one value per observation; 0 is a clean run
    (``jinverse.posterior.Status``)."""

    OK = 0
    HIGH_RHAT = 1
    LOW_ESS = 2
    DIVERGENCES = 4
    NONFINITE = 8
    UNCHECKED = 16  # R-hat and ESS not computed (``diagnose=False``): call `Posterior.diagnose`
    METRIC_FALLBACK = 32  # the whitening metric asked for could not be built (see jinverse.metric)
    TEMPERING_INCOMPLETE = 64  # SMC stopped (max_stages) before reaching the posterior (β < 1)
    MULTIMODAL = 128  # chains each stationary, in different modes (R-hat cannot fix it by running longer)


class FilterStatus(StatusFamily, enum.IntFlag):
    """Bit flags of a cycled ensemble run (`jinverse.assimilation.FilterResult.status`), one value
    per experiment; 0 is a clean run."""

    OK = 0
    NONFINITE = 1  # some analysis went NaN/inf (the run diverged numerically)
    OVERCONFIDENT = 2  # with a truth: time-mean analysis RMSE over DIVERGENCE_RATIO x the spread


_TEXT: dict[tuple[type, int], str] = {
    (MAPStatus, 0): "converged",
    (MAPStatus, 1): "stopped at max_steps without converging",
    (MAPStatus, 2): "non-finite objective or gradient",
    (MAPStatus, 3): "stalled: the objective stopped decreasing before the gradient was small",
    (MAPStatus, 4): "the negative Hessian at the mode is not positive definite",
    (MAPStatus, 5): "no result (no mode found, or a reason not stored)",
    (SamplingStatus, 0): "ok",
    (SamplingStatus, 1): "R-hat too high",
    (SamplingStatus, 2): "bulk ESS too low",
    (SamplingStatus, 4): "divergent transitions",
    (SamplingStatus, 8): "non-finite draws",
    (SamplingStatus, 16): "R-hat and ESS not computed",
    (SamplingStatus, 32): "whitening metric not built",
    (SamplingStatus, 64): "tempering stopped before the posterior",
    (SamplingStatus, 128): "chains in separate modes",
    (FilterStatus, 0): "ok",
    (FilterStatus, 1): "non-finite analyses",
    (FilterStatus, 2): "overconfident ensemble (filter divergence): analysis error far above the spread",
}


def finite_status(tree, batch_ndim: int):
    """`MAPStatus` codes of a direct (non-iterative) solve, one per element of the leading
    ``batch_ndim`` axes of every leaf of ``tree``: ``OK`` where all its entries are finite, else
    ``NONFINITE``. NumPy leaves give a NumPy array, JAX leaves a JAX array."""
    leaves = jax.tree.leaves(tree)
    xp = np if all(isinstance(a, np.ndarray) for a in leaves) else jnp
    finite = xp.ones(np.shape(leaves[0])[:batch_ndim], bool)
    for a in leaves:
        a = xp.asarray(a)
        finite = finite & xp.all(xp.isfinite(a.reshape(*a.shape[:batch_ndim], -1)), axis=-1)
    return xp.where(finite, int(MAPStatus.OK), int(MAPStatus.NONFINITE)).astype(xp.int32)


def approximation_status(search, ok):
    """The codes of a result built at a mode (Laplace, evidence): ``OK`` where ``ok``; else the
    mode search's own code where it failed, else ``NOT_POSITIVE_DEFINITE``."""
    xp = np if isinstance(ok, np.ndarray) and isinstance(search, np.ndarray) else jnp
    search = xp.asarray(search)
    return xp.where(ok, int(MAPStatus.OK),
                    xp.where(search != int(MAPStatus.OK), search, int(MAPStatus.NOT_POSITIVE_DEFINITE))
                    ).astype(xp.int32)
