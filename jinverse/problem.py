"""`InverseProblem`: forward model + prior + likelihood, and the one log-posterior.

Every solver in jinverse (MAP, every sampler, Laplace) evaluates `InverseProblem.log_density`,
the log-posterior in the prior's unconstrained space; the log-Jacobian of the bijector is added
there and nowhere else.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

from ._checks import check_key
from .likelihoods import AbstractLikelihood
from .priors import AbstractPrior


class InverseProblem(eqx.Module):
    """``p(θ | y) ∝ likelihood(y | forward(θ)) · prior(θ)``.

    Args:
        forward: maps one θ (no batch axis) to one prediction: a JAX function, an
            `equinox.Module` (e.g. a trained network) or a matrix (``θ ↦ A @ θ``).
        prior: a `jinverse.priors` prior (or `Joint` for a pytree θ).
        likelihood: a `jinverse.likelihoods` likelihood.

    Example::

        problem = ji.InverseProblem(lambda t: A @ t, ji.priors.Gaussian(jnp.zeros(n), 1.0),
                                    ji.likelihoods.Gaussian(0.1))
    """

    forward: Callable[..., Any]
    prior: AbstractPrior
    likelihood: AbstractLikelihood

    def __init__(self, forward, prior, likelihood):
        if isinstance(forward, (np.ndarray, jax.Array)):
            forward = MatrixOperator(forward)
        if not callable(forward):
            raise TypeError(f"forward: got {type(forward).__name__}, expected a callable on θ or a matrix"
                            + _pylops_hint(forward))
        if not isinstance(prior, AbstractPrior):
            raise TypeError(f"prior: got {type(prior).__name__}, expected a jinverse.priors prior")
        if not isinstance(likelihood, AbstractLikelihood):
            raise TypeError(f"likelihood: got {type(likelihood).__name__}, expected a jinverse.likelihoods likelihood")
        self.forward, self.prior, self.likelihood = forward, prior, likelihood

    # -- densities in θ's own space ---------------------------------------------------
    def log_prior(self, theta) -> Float[Array, ""]:
        return self.prior.log_prob(theta)

    def log_likelihood(self, theta, y) -> Float[Array, ""]:
        return self.likelihood.log_prob(y, self.forward(theta))

    def log_posterior(self, theta, y) -> Float[Array, ""]:
        """Unnormalised log p(θ | y) for one θ and one observation."""
        return self.log_likelihood(theta, y) + self.log_prior(theta)

    # -- the one density every solver uses --------------------------------------------
    def log_density(self, u, y, *, jacobian: bool = True) -> Float[Array, ""]:
        """log p(θ(u) | y) in the unconstrained space, with ``+ log|dθ/du|`` when ``jacobian``.

        Samplers target it with the Jacobian (a density of u); the MAP optimiser without it,
        so that the optimum is the mode in θ's own space.
        """
        theta = self.prior.from_unconstrained(u)
        lp = self.log_posterior(theta, y)
        if jacobian:
            lp = lp + self.prior.log_det_jacobian(u)
        return lp

    def to_unconstrained(self, theta):
        return self.prior.to_unconstrained(theta)

    def from_unconstrained(self, u):
        return self.prior.from_unconstrained(u)

    # -- generative side ----------------------------------------------------------------
    def simulate(self, key: PRNGKeyArray, theta) -> Array:
        """One noisy observation y ~ p(y | θ)."""
        check_key("key", key)
        return self.likelihood.sample(key, self.forward(theta))

    def sample_prior(self, key: PRNGKeyArray, shape: tuple[int, ...] = ()) -> PyTree:
        """Draws of θ from the prior, with leading axes ``shape``."""
        check_key("key", key)
        try:
            shape = tuple(shape)
        except TypeError:
            raise TypeError(f"shape: got {shape!r}, expected a tuple of integers >= 0") from None
        if not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 0 for s in shape):
            raise ValueError(f"shape: got {shape!r}, expected a tuple of integers >= 0")
        return self.prior.sample(key, shape)

    # -- shapes -------------------------------------------------------------------------
    def theta_shape_dtype(self):
        return _cached_shapes(self, "theta", self.prior.theta_shape_dtype)

    def prediction_shape_dtype(self):
        return _cached_shapes(self, "prediction", self._trace_prediction)

    def _trace_prediction(self):
        try:
            return jax.eval_shape(self.forward, self.theta_shape_dtype())
        except Exception as exc:
            raise ValueError(f"forward: failed on a θ shaped like the prior's event "
                             f"{self.prior.event_shape}: {exc}{_pylops_hint(self.forward)}") from exc

    def data_shape(self, pred=None) -> tuple[int, ...]:
        """The shape of one observation (the event shape of ``y``)."""
        pred = self.prediction_shape_dtype() if pred is None else pred
        if not isinstance(pred, jax.ShapeDtypeStruct):
            raise ValueError(f"forward: returns a pytree {jax.tree.structure(pred)}, expected one array")
        return self.likelihood.event_shape(pred)

    def check_y(self, y, name: str = "y") -> tuple[Array, tuple[int, ...]]:
        """Validate observations ``y`` shaped ``(*batch, *event)``; return ``(y, batch_shape)``.

        ``y`` comes back in the problem's precision, the float dtype of θ (the prior's): a
        float32 problem stays float32 when JAX runs in float64, and float32 data in a float64
        problem is widened. A problem whose parts disagree (θ in one precision, the forward
        model's output in another) is refused: its results would mix precisions.
        """
        if isinstance(y, jax.core.Tracer):
            raise TypeError(f"{name}: got a traced value; call jinverse solvers outside jit "
                            "(they compile themselves) or use the functional core directly")
        try:
            arr = np.asarray(y)
        except Exception as exc:
            raise TypeError(f"{name}: got {type(y).__name__}, expected an array of observations") from exc
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
            raise TypeError(f"{name}: got dtype {arr.dtype}, expected numbers")
        if np.issubdtype(arr.dtype, np.complexfloating):
            raise TypeError(f"{name}: got complex dtype {arr.dtype}, expected real numbers")
        pred = self.prediction_shape_dtype()  # traces forward once, on shapes only
        event = self.data_shape(pred)
        k = len(event)
        if arr.ndim < k or tuple(arr.shape[arr.ndim - k:]) != tuple(event):
            raise ValueError(self._shape_mismatch(name, arr.shape, pred, event))
        if arr.size == 0:
            raise ValueError(f"{name}: got shape {arr.shape} with no observations, expected at least one")
        batch = tuple(arr.shape[: arr.ndim - k])
        _check_finite_rows(name, arr, batch)
        self.likelihood.check_data(arr, pred, name)
        return jnp.asarray(arr, dtype=self._precision(pred)), batch

    def _shape_mismatch(self, name: str, shape, pred, event) -> str:
        """Why ``y`` of ``shape`` does not fit. The shape one observation must have comes from the
        forward model, so the message says so, and which to fix: y, or forward."""
        shape, out, event, k = tuple(shape), tuple(pred.shape), tuple(event), len(event)
        ref = self.theta_shape_dtype()
        theta = ref.shape if isinstance(ref, jax.ShapeDtypeStruct) else jax.tree.map(lambda r: r.shape, ref)
        squeezed = tuple(d for d in out if d != 1)
        if squeezed and squeezed != out and shape[len(shape) - len(squeezed):] == squeezed:
            # forward(θ) has stray length-1 axes ((m, 1) where y's observations are (m,)): forward's bug
            return (f"forward: returns shape {out} for one θ of shape {theta}, but {name} has shape {shape}, "
                    f"whose observations look like shape {squeezed}; expected forward to return {squeezed} "
                    "(drop its length-1 axes, e.g. with jnp.squeeze)")
        lik = type(self.likelihood).__name__
        msg = (f"{name}: got shape {shape}, expected (*batch, {', '.join(map(str, event))}{',' if k == 1 else ''})"
               f" — one observation has shape {event}, set by forward: it returns shape {out} for one θ of "
               f"shape {theta} ({lik} likelihood)")
        if k and len(shape) >= k:
            got = shape[len(shape) - k:]
            should = got + out[k:]  # Categorical: the class axis after the observation's shape
            msg += (f". If {name} is right (observations of shape {got}), forward is what is wrong: it should "
                    f"return shape {should}")
        return msg + "."

    def _precision(self, pred) -> np.dtype:
        """The float dtype the problem computes in: θ's (the prior's), which the forward model's
        output must share."""
        ref = self.theta_shape_dtype()
        floats = {np.dtype(r.dtype) for r in jax.tree.leaves(ref) if jnp.issubdtype(r.dtype, jnp.floating)}
        if not floats:
            return np.dtype(jnp.result_type(float))
        theta = max(floats, key=lambda d: d.itemsize)
        default = np.dtype(jnp.result_type(float))
        if len(floats) > 1:
            raise TypeError(f"prior: gives θ leaves in {' and '.join(sorted(map(str, floats)))}, expected one "
                            "float dtype (results would mix precisions); build every part of the prior from "
                            f"arrays of one dtype, e.g. jnp.asarray(x, jnp.{default})")
        out = np.dtype(pred.dtype)
        if jnp.issubdtype(out, jnp.floating) and out != theta:
            narrow, wide = sorted((theta, out), key=lambda d: d.itemsize)
            culprit = "prior" if theta != default else "forward"
            raise TypeError(
                f"{culprit}: got θ in {theta} (the prior's dtype) and forward's output in {out}, expected one "
                f"precision (JAX computes in {default}): the results would mix {narrow} and {wide}. Build the "
                f"prior and the forward model's arrays in one dtype, e.g. jnp.asarray(x, jnp.{default}), or "
                f"everything in {narrow}")
        return theta

    def check_theta(self, theta, name: str, batch_shape: tuple[int, ...]) -> PyTree:
        """Validate a θ pytree shaped ``event`` or ``(*batch, *event)``; broadcast to the batch."""
        ref = self.theta_shape_dtype()
        if isinstance(ref, jax.ShapeDtypeStruct) and isinstance(theta, (list, tuple)):
            try:  # a (nested) list of numbers for an array θ
                theta = np.asarray(theta)
            except ValueError:
                raise TypeError(f"{name}: got a ragged list, expected an array of numbers shaped like θ") from None
        try:
            leaves = jax.tree.leaves(jax.tree.map(lambda a, r: None, theta, ref, is_leaf=lambda x: x is None))
            del leaves
        except ValueError as exc:
            raise ValueError(f"{name}: got a pytree of structure {jax.tree.structure(theta)}, "
                             f"expected {jax.tree.structure(ref)}") from exc

        def fix(a, r):
            try:
                a = jnp.asarray(a, dtype=r.dtype)
            except (TypeError, ValueError):
                raise TypeError(f"{name}: got {a!r:.60}, expected an array of numbers shaped like θ") from None
            if a.shape == r.shape:
                return jnp.broadcast_to(a, (*batch_shape, *r.shape))
            if a.shape == (*batch_shape, *r.shape):
                return a
            also = f" or {(*batch_shape, *r.shape)}" if batch_shape else ""
            raise ValueError(f"{name}: got shape {a.shape}, expected {r.shape}{also}")

        out = jax.tree.map(fix, theta, ref)
        if not all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(out)):
            raise ValueError(f"{name}: got non-finite values, expected finite starting points")
        return out


def _pylops_hint(forward) -> str:
    """For a PyLops operator: how to make it a JAX forward model."""
    if not type(forward).__module__.startswith("pylops"):
        return ""
    return ("; a PyLops operator must be wrapped and built on JAX arrays: "
            "pylops.JaxOperator(pylops.MatrixMult(jnp.asarray(A))) (its JAX backend)")


def _check_finite_rows(name: str, arr: np.ndarray, batch: tuple[int, ...], show: int = 5) -> None:
    """Refuse non-finite observations, naming the rows (batch indices) that hold them."""
    finite = np.isfinite(arr)
    if finite.all():
        return
    bad = int(arr.size - np.count_nonzero(finite))
    msg = f"{name}: got {bad} non-finite value(s) (NaN or inf), expected finite observations"
    if batch:
        where = np.argwhere(~finite.reshape(*batch, -1).all(axis=-1))
        if len(batch) == 1:
            idx, label = [str(int(w[0])) for w in where[:show]], "row" if len(where) == 1 else "rows"
        else:
            idx, label = [str(tuple(map(int, w))) for w in where[:show]], "element" if len(where) == 1 else "elements"
        more = ", ..." if len(where) > show else ""
        msg += (f", in {len(where)} of {int(np.prod(batch))} observations ({label} {', '.join(idx)}{more}); fix or "
                "drop those (each observation is solved on its own)")
    raise ValueError(msg)


def flat_leaves(tree: PyTree, lead: int) -> Array:
    """The leaves of a θ pytree with ``lead`` leading (batch, chain, draw) axes, each raveled
    after those axes and joined in tree order: ``(*lead_shape, d)``. The one θ-flatten helper
    (`jax.flatten_util.ravel_pytree` does the same for ``lead=0``)."""
    return jnp.concatenate([jnp.reshape(a, (*jnp.shape(a)[:lead], -1)) for a in jax.tree.leaves(tree)], axis=-1)


def flat_leaves_np(tree: PyTree, lead: int) -> np.ndarray:
    """`flat_leaves` on the host, for applications (plots, reports, scores): NumPy arrays out,
    no device copy, each leaf's dtype kept (promoted only where leaves differ)."""
    return np.concatenate([np.reshape(np.asarray(a), (*np.shape(a)[:lead], -1)) for a in jax.tree.leaves(tree)],
                          axis=-1)


class MatrixOperator(eqx.Module):
    """A dense linear forward model ``θ ↦ A @ θ``."""

    matrix: Float[Array, "m n"]

    def __call__(self, theta):
        return self.matrix @ theta


# Shapes of a problem, traced once per problem object (a problem is immutable, and the shapes of
# its θ and of forward(θ) are fixed by it): every driver call checks y against them, and tracing
# forward for them cost a few ms a call. Keyed by id with a weak reference, so a problem's entry
# goes with it (problems hold arrays, so they cannot be dictionary keys).
_SHAPES: dict[tuple[int, str], tuple[weakref.ref, Any]] = {}


def _cached_shapes(problem: InverseProblem, what: str, compute: Callable[[], Any]):
    key = (id(problem), what)
    hit = _SHAPES.get(key)
    if hit is not None and hit[0]() is problem:
        return hit[1]
    out = compute()
    if any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(problem)):
        return out  # a problem rebuilt inside a trace: short-lived, not worth keeping

    def forget(_ref, key=key):
        _SHAPES.pop(key, None)

    _SHAPES[key] = (weakref.ref(problem, forget), out)
    return out
