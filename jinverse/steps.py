"""The step protocol of the one MAP loop (`jinverse.map`): what a MAP optimiser is.

A step object says how to start (``init``) and how to advance (``step``) from the loop's current
`Point`; the loop in `jinverse.map` owns everything else (the stopping test, the step count, the
status). One call of ``step`` evaluates one new point and says, by name, whether it finished an
optimiser iteration (``advanced``, counted against ``max_steps``) and whether the run is stuck
(``stalled``), so vmapped lanes do the same work per loop step and nothing nests.

The built-in steps (`jinverse._quasi_newton.QuasiNewton`, `jinverse.newton.DampedNewton`,
`jinverse.newton.NewtonCG`, `OptaxStep`) are found by name in `jinverse.map.STEPS`
(``optimizer="bfgs"``...); a user passes their own as ``ji.solve_map(..., optimizer=MyStep())``::

    class GradientDescent(ji.steps.AbstractStep):
        rate: float = 0.1

        def init(self, target, point):
            return None

        def step(self, target, point, state):
            u = jax.tree.map(lambda x, g: x - self.rate * g, point.u, point.grad)
            value, grad = jax.value_and_grad(target.objective)(u)
            return ji.steps.Stepped(ji.steps.Point(u, value, grad), state,
                                    stalled=~(value < point.value), advanced=jnp.asarray(True))

A step object is an `equinox.Module`: its fields are settings (static, hashed for the compiled
program), and its state a pytree of arrays whose structure does not change between steps.
"""

from __future__ import annotations

import abc
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
import optax.tree_utils as otu
from jaxtyping import Array, Bool, Float, PyTree

from .problem import InverseProblem


class Point(NamedTuple):
    """Where the MAP loop is: ``u`` (unconstrained θ, a pytree), the objective ``value`` there
    (the negative log-density) and its gradient ``grad`` (same structure as ``u``)."""

    u: PyTree
    value: Float[Array, ""]
    grad: PyTree


class Target(NamedTuple):
    """What a step minimises, for one observation: ``objective(u) = -problem.log_density(u, y,
    jacobian=jacobian)``; ``tol`` is the loop's gradient tolerance (a step may stop inner
    iterations by it)."""

    problem: InverseProblem
    y: Array
    jacobian: bool = False
    tol: float = 1e-9

    def objective(self, u) -> Float[Array, ""]:
        return -self.problem.log_density(u, self.y, jacobian=self.jacobian)


class Stepped(NamedTuple):
    """What ``step`` returns: the new `Point` (the old one where the trial was rejected), the
    step's new state, ``stalled`` (no progress is possible: the loop stops) and ``advanced``
    (one optimiser iteration completed)."""

    point: Point
    state: Any
    stalled: Bool[Array, ""]
    advanced: Bool[Array, ""] | bool


class AbstractStep(eqx.Module):
    """A MAP optimiser for the one loop of `jinverse.map`: ``init`` then ``step`` repeatedly."""

    @abc.abstractmethod
    def init(self, target: Target, point: Point) -> Any:
        """The step's state at the start ``point``."""

    @abc.abstractmethod
    def step(self, target: Target, point: Point, state: Any) -> Stepped:
        """Evaluate one new point from ``point`` and ``state``."""


class OptaxStep(AbstractStep):
    """One update of an optax ``GradientTransformation`` (``optax.lbfgs()``, ``optax.adam(1e-2)``).
    With a line search (L-BFGS) the step is stalled when the objective did not decrease; plain
    first-order optimisers (adam, sgd) need not decrease every step."""

    optimizer: optax.GradientTransformationExtraArgs

    def init(self, target: Target, point: Point) -> Any:
        return self.optimizer.init(point.u)

    def step(self, target: Target, point: Point, state: Any) -> Stepped:
        opt, objective = self.optimizer, target.objective
        cached = otu.tree_get(opt.init(jnp.zeros(1)), "value", default=None) is not None
        u, v, g = point
        updates, state = opt.update(g, state, u, value=v, grad=g, value_fn=objective)
        u_new = optax.apply_updates(u, updates)
        if cached:  # L-BFGS's line search already evaluated the new point
            v_new, g_new = optax.value_and_grad_from_state(objective)(u_new, state=state)
        else:
            v_new, g_new = jax.value_and_grad(objective)(u_new)
        return Stepped(Point(u_new, v_new, g_new), state, (~(v_new < v)) & cached, True)
