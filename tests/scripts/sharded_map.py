"""Run in a fresh process: batched MAP on 8 virtual CPU devices equals the one-device result."""

import sys

import jax

jax.config.update("jax_num_cpu_devices", 8)
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType

import jinverse as ji

assert len(jax.devices()) == 8, jax.devices()
A = jax.random.normal(jax.random.key(0), (12, 5))
problem = ji.InverseProblem(lambda t: jnp.tanh(A @ t), ji.priors.Gaussian(jnp.zeros(5), 1.0),
                            ji.likelihoods.Gaussian(0.1))
Y = jax.random.normal(jax.random.key(1), (203, 12)) * 0.5  # not a multiple of 8: padding exercised
mesh = jax.make_mesh((8,), ("batch",), axis_types=(AxisType.Auto,))
for optimizer in (None, "newton"):
    one = ji.solve_map(problem, Y, optimizer=optimizer, chunk_size=8)
    many = ji.solve_map(problem, Y, optimizer=optimizer, chunk_size=8, mesh=mesh, block_size=64)
    assert many.theta.shape == (203, 5)
    assert bool(jnp.all(one.converged)) and bool(jnp.all(many.converged))
    err = float(jnp.max(jnp.abs(one.theta - many.theta)))
    print(optimizer, "max |one - sharded| =", err)
    # the same optimum to the solver's accuracy (tol=1e-9 on the gradient), and the same objective
    assert err < 1e-7, err
    assert np.allclose(one.log_posterior, many.log_posterior, rtol=1e-12), optimizer
one = ji.laplace(problem, Y[:37])
many = ji.laplace(problem, Y[:37], mesh=mesh, block_size=16)
assert bool(jnp.all(many.ok)) and many.covariance.shape == (37, 5, 5)
print("laplace max |one - sharded| cov =", float(jnp.max(jnp.abs(one.covariance - many.covariance))))
assert np.allclose(one.covariance, many.covariance, rtol=1e-6, atol=1e-9)
assert float(jnp.max(jnp.abs(one.mean - many.mean))) < 1e-7
print("OK")
sys.exit(0)
