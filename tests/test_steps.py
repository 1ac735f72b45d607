"""The named step protocol of the MAP loop (`jinverse.steps`, issue 17): built-in optimisers are
step objects in one registry (`jinverse.map.STEPS`), and a user's own step object runs in
`ji.solve_map`."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jinverse as ji
from jinverse.map import STEPS, Status
from jinverse.steps import AbstractStep, Point, Stepped


class Newton(AbstractStep):
    """A user's plain Newton step (exact Hessian, no damping, no line search): written here,
    independently of the built-in steps."""

    def init(self, target, point):
        return jnp.zeros((), jnp.int32)  # a state: Newton steps taken

    def step(self, target, point, state):
        hess = jax.hessian(target.objective)(point.u)
        u = point.u - jnp.linalg.solve(hess, point.grad)
        value, grad = jax.value_and_grad(target.objective)(u)
        return Stepped(Point(u, value, grad), state + 1, stalled=~(value <= point.value), advanced=True)


class Delegate(AbstractStep):
    """A user's step that wraps a built-in one through the protocol."""

    inner: AbstractStep

    def init(self, target, point):
        return self.inner.init(target, point)

    def step(self, target, point, state):
        return self.inner.step(target, point, state)


@pytest.fixture(scope="module")
def small():
    return ji.problems.load("phillips", n=16, batch=3)


def test_user_step_matches_the_closed_form_and_the_built_in(small):
    """On a linear-Gaussian problem one Newton step lands on the posterior mean: the user's step
    agrees with the built-in Gauss-Newton and with the closed form to the loop's tolerance."""
    p, y = small.problem, small.y
    mine = ji.solve_map(p, y, optimizer=Newton(), warn=False)
    assert np.all(np.asarray(mine.status) == Status.CONVERGED) and np.all(np.asarray(mine.num_steps) <= 2)
    built_in = ji.solve_map(p, y, optimizer="gauss-newton", warn=False)
    # the posterior mean: (AᵀA/s² + D⁻²)⁻¹ (Aᵀy/s² + D⁻² m), prior N(m, diag(D²))
    A, s = np.asarray(small.info["A"]), float(p.likelihood.std)
    m, d2 = np.asarray(p.prior.mean), np.broadcast_to(np.asarray(p.prior.std), (A.shape[1],)) ** 2
    exact = np.linalg.solve(A.T @ A / s**2 + np.diag(1 / d2), (A.T @ np.asarray(y).T / s**2) + (m / d2)[:, None]).T
    scale = np.max(np.abs(exact))
    assert np.max(np.abs(np.asarray(mine.theta) - exact)) <= 1e-6 * scale
    assert np.max(np.abs(np.asarray(mine.theta) - np.asarray(built_in.theta))) <= 1e-6 * scale


@pytest.mark.parametrize("name", ["bfgs", "lbfgs", "newton-cg"])
def test_names_are_step_objects_of_one_registry(small, name):
    """A name runs the registry's step object: passing the object, or a user's step that wraps
    it through the protocol, gives the same bits."""
    p, y = small.problem, small.y
    by_name = ji.solve_map(p, y, optimizer=name, max_steps=50, warn=False)
    for opt in (STEPS[name], Delegate(STEPS[name])):
        other = ji.solve_map(p, y, optimizer=opt, max_steps=50, warn=False)
        np.testing.assert_array_equal(np.asarray(other.theta), np.asarray(by_name.theta))
        np.testing.assert_array_equal(np.asarray(other.num_steps), np.asarray(by_name.num_steps))


def test_bad_optimizer_names_the_protocol(small):
    with pytest.raises(TypeError, match=r"optimizer: got object.*jinverse.steps.AbstractStep"):
        ji.solve_map(small.problem, small.y, optimizer=object())
    with pytest.raises(ValueError, match=r"optimizer: got 'sgd'"):
        ji.solve_map(small.problem, small.y, optimizer="sgd")
