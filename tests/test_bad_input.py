"""The bad-input catalogue: every public entry point refuses bad arguments before compiling.

Each case names the call, the exception class and a regular expression that the message must
match: the argument's name, what it got and what was expected. All checks are host-side, so the
whole file runs without compiling a solver.
"""

import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jinverse as ji

P, L = ji.priors, ji.likelihoods
A = jnp.asarray(np.random.default_rng(0).normal(size=(4, 2)))
Y = jnp.ones(4)
KEY = jax.random.key(0)


def _linear():
    return ji.InverseProblem(A, P.Gaussian(jnp.zeros(2), 1.0), L.Gaussian(0.5))


def _counts(lik):
    return ji.InverseProblem(jnp.exp, P.Gaussian(jnp.zeros(3), 1.0), lik)


NAN_Y = jnp.array([1.0, jnp.nan, 0.0, 0.0])
INF_Y = jnp.array([1.0, jnp.inf, 0.0, 0.0])

# (id, call, exception, match)
PRIORS = [
    ("gaussian std=0", lambda: P.Gaussian(0.0, 0.0), ValueError, r"std: got 0\.0, expected values > 0"),
    ("gaussian std<0", lambda: P.Gaussian(jnp.zeros(2), -1.0), ValueError, r"std: got -1\.0, expected values > 0"),
    ("gaussian std vector <=0", lambda: P.Gaussian(jnp.zeros(3), jnp.array([1.0, 0.0, 2.0])), ValueError,
     r"std: got \[1\.0, 0\.0, 2\.0\], expected values > 0"),
    ("gaussian mean NaN", lambda: P.Gaussian(jnp.array([0.0, jnp.nan]), 1.0), ValueError,
     r"mean: got 1 non-finite value\(s\) \(NaN or inf\), expected finite"),
    ("gaussian mean inf", lambda: P.Gaussian(jnp.array([jnp.inf, 0.0]), 1.0), ValueError,
     r"mean: got 1 non-finite .*expected finite"),
    ("gaussian mean str", lambda: P.Gaussian("a", 1.0), TypeError, r"mean: got dtype <U1, expected real numbers"),
    ("gaussian mean complex", lambda: P.Gaussian(jnp.zeros(2) + 1j, 1.0), TypeError,
     r"mean: got complex dtype complex128, expected real numbers"),
    ("gaussian mean None", lambda: P.Gaussian(None, 1.0), TypeError, r"mean: got None, expected a number"),
    ("gaussian mean/std shapes", lambda: P.Gaussian(jnp.zeros(3), jnp.ones(2)), ValueError,
     r"mean, std: got mean of shape \(3,\) and std of shape \(2,\), expected shapes that broadcast"),
    ("gaussian std and cov", lambda: P.Gaussian(jnp.zeros(2), 1.0, cov=jnp.eye(2)), ValueError,
     r"got \['std', 'cov'\] of std/cov/precision, expected exactly one"),
    ("gaussian no scale", lambda: P.Gaussian(jnp.zeros(2)), ValueError, r"got none of std/cov/precision, expected exactly one"),
    ("gaussian cov not PD", lambda: P.Gaussian(jnp.zeros(2), cov=jnp.array([[1.0, 2.0], [2.0, 1.0]])), ValueError,
     r"cov: got a matrix that is not positive definite, expected a symmetric positive-definite"),
    ("gaussian cov not symmetric", lambda: P.Gaussian(jnp.zeros(2), cov=jnp.array([[1.0, 0.5], [0.0, 1.0]])),
     ValueError, r"cov: got a non-symmetric matrix, expected a symmetric"),
    ("gaussian cov not square", lambda: P.Gaussian(jnp.zeros(2), cov=jnp.ones((2, 3))), ValueError,
     r"cov: got shape \(2, 3\), expected a square matrix"),
    ("gaussian cov NaN", lambda: P.Gaussian(jnp.zeros(2), cov=jnp.array([[1.0, jnp.nan], [jnp.nan, 1.0]])),
     ValueError, r"cov: got 2 non-finite"),
    ("gaussian precision not PD", lambda: P.Gaussian(jnp.zeros(2), precision=-jnp.eye(2)), ValueError,
     r"precision: got a matrix that is not positive definite"),
    ("gaussian mean vs cov", lambda: P.Gaussian(jnp.zeros(3), cov=jnp.eye(2)), ValueError,
     r"mean: got shape \(3,\), expected \(2,\) to match cov of shape \(2, 2\)"),
    ("uniform low>high", lambda: P.Uniform(1.0, 0.0), ValueError,
     r"low, high: got low=1\.0 and high=0\.0, expected low < high everywhere"),
    ("uniform low==high", lambda: P.Uniform(jnp.zeros(2), jnp.array([1.0, 0.0])), ValueError,
     r"low, high: got low=\[0\.0, 0\.0\] and high=\[1\.0, 0\.0\], expected low < high"),
    ("uniform high inf", lambda: P.Uniform(0.0, jnp.inf), ValueError, r"high: got 1 non-finite .*expected finite"),
    ("uniform low NaN", lambda: P.Uniform(jnp.nan, 1.0), ValueError, r"low: got 1 non-finite .*expected finite"),
    ("uniform shapes", lambda: P.Uniform(jnp.zeros(3), jnp.ones(2)), ValueError,
     r"low, high: got low of shape \(3,\) and high of shape \(2,\), expected shapes that broadcast"),
    ("lognormal scale=0", lambda: P.LogNormal(0.0, 0.0), ValueError, r"scale: got 0\.0, expected values > 0"),
    ("lognormal loc inf", lambda: P.LogNormal(jnp.inf, 1.0), ValueError, r"loc: got 1 non-finite"),
    ("lognormal shapes", lambda: P.LogNormal(jnp.zeros(3), jnp.ones(2)), ValueError,
     r"loc, scale: got loc of shape \(3,\) and scale of shape \(2,\)"),
    ("halfnormal scale<0", lambda: P.HalfNormal(-1.0), ValueError, r"scale: got -1\.0, expected values > 0"),
    ("laplace scale NaN", lambda: P.Laplace(0.0, jnp.nan), ValueError, r"scale: got 1 non-finite .*expected finite"),
    ("laplace shapes", lambda: P.Laplace(jnp.zeros(3), jnp.ones(2)), ValueError,
     r"loc, scale: got loc of shape \(3,\) and scale of shape \(2,\)"),
    ("joint empty", lambda: P.Joint({}), TypeError, r"priors: got a pytree with leaves none, expected a pytree of priors"),
    ("joint non-prior leaf", lambda: P.Joint({"a": 1.0}), TypeError,
     r"priors: got a pytree with leaves \['float'\], expected a pytree of priors"),
    ("gmrf shape too small", lambda: P.GMRF((2,)), ValueError, r"shape: got 2, expected an integer >= 3"),
    ("gmrf shape 3-D", lambda: P.GMRF((3, 3, 3)), ValueError, r"shape: got \(3, 3, 3\), expected \(n,\) or \(n1, n2\)"),
    ("gmrf order", lambda: P.GMRF((5,), order=3), ValueError, r"order: got 3, expected 1 or 2"),
    ("gmrf boundary", lambda: P.GMRF((5,), boundary="wrap"), ValueError, r"boundary: got 'wrap', expected"),
    ("gmrf precision", lambda: P.GMRF((5,), precision=-1.0), ValueError, r"precision: got -1\.0, expected values > 0"),
    ("tv weight", lambda: P.TotalVariation((5,), weight=0.0), ValueError, r"weight: got 0\.0, expected values > 0"),
    ("tv smoothing", lambda: P.TotalVariation((5,), smoothing=-1.0), ValueError,
     r"smoothing: got -1\.0, expected a number >= 0"),
    ("tv prox_iters", lambda: P.TotalVariation((5,), prox_iters=0), ValueError, r"prox_iters: got 0, expected an integer >= 1"),
    ("sparse scale", lambda: P.SparseL1((8,), scale=0.0), ValueError, r"scale: got 0\.0, expected values > 0"),
    ("sparse basis", lambda: P.SparseL1((8,), basis="dct"), ValueError, r"basis: got 'dct', expected"),
    ("gamma concentration", lambda: P.Gamma(0.0, 1.0), ValueError, r"concentration: got 0\.0, expected values > 0"),
    ("gamma rate", lambda: P.Gamma(1.0, -1.0), ValueError, r"rate: got -1\.0, expected values > 0"),
]

LIKELIHOODS = [
    ("gaussian std=0", lambda: L.Gaussian(0.0), ValueError, r"std: got 0\.0, expected values > 0"),
    ("gaussian std inf", lambda: L.Gaussian(jnp.inf), ValueError, r"std: got 1 non-finite"),
    ("gaussian std and cov", lambda: L.Gaussian(1.0, cov=jnp.eye(2)), ValueError, r"expected exactly one of std or cov"),
    ("gaussian neither", lambda: L.Gaussian(), ValueError, r"expected exactly one of std or cov"),
    ("gaussian cov not PD", lambda: L.Gaussian(cov=-jnp.eye(2)), ValueError,
     r"cov: got a matrix that is not positive definite"),
    ("studentt df=0", lambda: L.StudentT(0.0, 1.0), ValueError, r"df: got 0\.0, expected values > 0"),
    ("studentt scale<0", lambda: L.StudentT(3.0, -1.0), ValueError, r"scale: got -1\.0, expected values > 0"),
    ("studentt df str", lambda: L.StudentT("3", 1.0), TypeError, r"df: got dtype <U1, expected real numbers"),
]

PROBLEM = [
    ("forward not callable", lambda: ji.InverseProblem(3, P.Gaussian(0.0, 1.0), L.Gaussian(1.0)), TypeError,
     r"forward: got int, expected a callable on θ or a matrix"),
    ("prior not a prior", lambda: ji.InverseProblem(A, 3, L.Gaussian(1.0)), TypeError,
     r"prior: got int, expected a jinverse.priors prior"),
    ("likelihood not a likelihood", lambda: ji.InverseProblem(A, P.Gaussian(jnp.zeros(2), 1.0), "normal"),
     TypeError, r"likelihood: got str, expected a jinverse.likelihoods likelihood"),
    ("forward fails on θ", lambda: ji.solve_map(ji.InverseProblem(jnp.ones((4, 3)), P.Gaussian(jnp.zeros(2), 1.0),
                                                                  L.Gaussian(1.0)), Y), ValueError,
     r"forward: failed on a θ shaped like the prior's event \(2,\)"),
    ("likelihood cov vs forward", lambda: ji.solve_map(ji.InverseProblem(A, P.Gaussian(jnp.zeros(2), 1.0),
                                                                         L.Gaussian(cov=jnp.eye(3))), Y),
     ValueError, r"forward: returns shape \(4,\), expected \(3,\) to match the likelihood's cov"),
    ("likelihood std vs forward", lambda: ji.solve_map(ji.InverseProblem(A, P.Gaussian(jnp.zeros(2), 1.0),
                                                                         L.Gaussian(jnp.ones(3))), Y),
     ValueError, r"forward: returns shape \(4,\), which the likelihood's std of shape \(3,\) does not broadcast"),
    ("categorical scalar logits", lambda: ji.solve_map(ji.InverseProblem(jnp.sum, P.Gaussian(jnp.zeros(2), 1.0),
                                                                         L.Categorical()), 0),
     ValueError, r"forward: returns a scalar, expected a vector of class logits"),
    ("PyLops operator", lambda: ji.InverseProblem(type("MatrixMult", (), {"__module__": "pylops.basicoperators"})(),
                                                  P.Gaussian(jnp.zeros(2), 1.0), L.Gaussian(1.0)), TypeError,
     r"forward: got MatrixMult, expected a callable on θ or a matrix; a PyLops operator must be wrapped and built "
     r"on JAX arrays: pylops\.JaxOperator\(pylops\.MatrixMult\(jnp\.asarray\(A\)\)\)"),
    ("sample_prior key", lambda: _linear().sample_prior(3, (2,)), TypeError,
     r"key: got int, expected a JAX PRNG key"),
    ("sample_prior negative shape", lambda: _linear().sample_prior(KEY, (-1,)), ValueError,
     r"shape: got \(-1,\), expected a tuple of integers >= 0"),
    ("sample_prior shape not a tuple", lambda: _linear().sample_prior(KEY, 2.5), TypeError,
     r"shape: got 2\.5, expected a tuple of integers"),
    ("simulate key", lambda: _linear().simulate(3, jnp.zeros(2)), TypeError, r"key: got int, expected a JAX PRNG key"),
]

# Bad observations, the same for every solver that takes y.
DATA = [
    ("y NaN", lambda: (_linear(), NAN_Y), ValueError, r"y: got 1 non-finite value\(s\) \(NaN or inf\), expected finite"),
    ("y inf", lambda: (_linear(), INF_Y), ValueError, r"y: got 1 non-finite value\(s\) \(NaN or inf\), expected finite"),
    ("y wrong shape", lambda: (_linear(), jnp.ones(3)), ValueError,
     r"y: got shape \(3,\), expected \(\*batch, 4,\) — one observation has shape \(4,\)"),
    ("y wrong batched shape", lambda: (_linear(), jnp.ones((5, 3))), ValueError, r"y: got shape \(5, 3\), expected \(\*batch, 4,\)"),
    ("y empty batch", lambda: (_linear(), jnp.ones((0, 4))), ValueError,
     r"y: got shape \(0, 4\) with no observations, expected at least one"),
    ("y strings", lambda: (_linear(), np.array(["a", "b", "c", "d"])), TypeError, r"y: got dtype <U1, expected numbers"),
    ("y objects", lambda: (_linear(), np.array([1, None, 2, 3], dtype=object)), TypeError,
     r"y: got dtype object, expected numbers"),
    ("y complex", lambda: (_linear(), jnp.ones(4) + 1j), TypeError, r"y: got complex dtype complex128, expected real"),
    ("poisson negative count", lambda: (_counts(L.Poisson()), jnp.array([1.0, -1.0, 0.0])), ValueError,
     r"y: got values that are negative or not whole numbers .*expected non-negative integer counts"),
    ("poisson non-integer count", lambda: (_counts(L.Poisson()), jnp.array([1.0, 1.5, 0.0])), ValueError,
     r"y: got values that are negative or not whole numbers .*expected non-negative integer counts"),
    ("bernoulli not 0/1", lambda: (_counts(L.Bernoulli()), jnp.array([1.0, 2.0, 0.0])), ValueError,
     r"y: got values other than 0 and 1 \(\[0\.0, 1\.0, 2\.0\]\), expected binary outcomes"),
    ("categorical label too big", lambda: (_counts(L.Categorical()), jnp.array(3)), ValueError,
     r"y: got labels \[3\], expected integers in \[0, 2\] for a model with 3 classes"),
    ("categorical label negative", lambda: (_counts(L.Categorical()), jnp.array([0, -1])), ValueError,
     r"y: got labels \[-1, 0\], expected integers in \[0, 2\]"),
    ("categorical label fractional", lambda: (_counts(L.Categorical()), jnp.array(1.5)), ValueError,
     r"y: got labels \[1\.5\], expected integers in \[0, 2\]"),
]

# Issue 15 item 9: errors that name the real culprit, and where.
ONE_HOT = jnp.array([0.0, 1.0, 0.0])
NAN_ROW = jnp.ones((1000, 4)).at[637, 2].set(jnp.nan)
F32 = jnp.float32
DATA += [
    ("forward with a stray axis", lambda: (ji.InverseProblem(lambda t: (A @ t)[:, None], P.Gaussian(jnp.zeros(2), 1.0),
                                                             L.Gaussian(0.5)), jnp.ones((5, 4))), ValueError,
     r"forward: returns shape \(4, 1\) for one θ of shape \(2,\), but y has shape \(5, 4\), whose observations look "
     r"like shape \(4,\); expected forward to return \(4,\)"),
    ("forward of the wrong length", lambda: (ji.InverseProblem(A[:3], P.Gaussian(jnp.zeros(2), 1.0), L.Gaussian(0.5)),
                                             jnp.ones((5, 4))), ValueError,
     r"y: got shape \(5, 4\), expected \(\*batch, 3,\) — one observation has shape \(3,\), set by forward: it returns "
     r"shape \(3,\) for one θ of shape \(2,\) \(Gaussian likelihood\)\. If y is right \(observations of shape \(4,\)\), "
     r"forward is what is wrong: it should return shape \(4,\)"),
    ("categorical one-hot rows", lambda: (_counts(L.Categorical()), jnp.eye(3)[jnp.array([2, 0, 1, 1, 0, 2, 2, 1])]),
     ValueError, r"y: got shape \(8, 3\) holding 8 one-hot rows of length 3 \(axis 1\), expected integer class labels in "
     r"\[0, 2\] shaped \(\*batch\): pass y\.argmax\(axis=1\) \(shape \(8,\)\)\. If these are 3 separate labels, add "
     r"a batch axis after them: shape \(8, 3, 1\)"),
    ("one NaN in a big batch", lambda: (_linear(), NAN_ROW), ValueError,
     r"y: got 1 non-finite value\(s\) \(NaN or inf\), expected finite observations, in 1 of 1000 observations "
     r"\(row 637\); fix or drop those"),
    ("NaN rows of a 2-D batch", lambda: (_linear(), NAN_ROW.reshape(10, 100, 4)), ValueError,
     r"in 1 of 1000 observations \(element \(6, 37\)\)"),
    ("float32 prior, float64 forward", lambda: (ji.InverseProblem(A, P.Gaussian(jnp.zeros(2, F32), F32(1.0)),
                                                                  L.Gaussian(0.5)), Y), TypeError,
     r"prior: got θ in float32 \(the prior's dtype\) and forward's output in float64, expected one precision \(JAX "
     r"computes in float64\): the results would mix float32 and float64"),
    ("float64 prior, float32 forward", lambda: (ji.InverseProblem(lambda t: (A @ t).astype(F32),
                                                                  P.Gaussian(jnp.zeros(2), 1.0), L.Gaussian(0.5)), Y),
     TypeError, r"forward: got θ in float64 \(the prior's dtype\) and forward's output in float32"),
]

SOLVERS = {
    "solve_map": lambda p, y: ji.solve_map(p, y),
    "sample": lambda p, y: ji.sample(p, y, key=KEY),
    "laplace": lambda p, y: ji.laplace(p, y),
}

SAMPLE = [
    ("num_chains=0", dict(num_chains=0), ValueError, r"num_chains: got 0, expected an integer >= 1"),
    ("num_chains<0", dict(num_chains=-1), ValueError, r"num_chains: got -1, expected an integer >= 1"),
    ("num_chains float", dict(num_chains=2.0), TypeError, r"num_chains: got 2\.0 \(float\), expected an integer"),
    ("num_chains bool", dict(num_chains=True), TypeError, r"num_chains: got True \(bool\), expected an integer"),
    ("num_warmup=0", dict(num_warmup=0), ValueError, r"num_warmup: got 0, expected an integer >= 1"),
    ("num_warmup<0", dict(num_warmup=-5), ValueError, r"num_warmup: got -5, expected an integer >= 1"),
    ("num_samples=0", dict(num_samples=0), ValueError, r"num_samples: got 0, expected an integer >= 4"),
    ("num_samples=3", dict(num_samples=3), ValueError, r"num_samples: got 3, expected an integer >= 4"),
    ("num_samples str", dict(num_samples="100"), TypeError, r"num_samples: got '100' \(str\), expected an integer"),
    ("unknown method", dict(method="nutz"), ValueError,
     r"method: got 'nutz', expected one of \['chees', ('gpcn', )?'hmc', 'mala', 'mclmc', 'nuts', 'pcn', 'rwmh'\]"),
    ("method not str", dict(method=3), ValueError, r"method: got 3, expected one of"),
    ("key int", dict(key=0), TypeError, r"key: got int, expected a JAX PRNG key, e\.g\. jax\.random\.key\(0\)"),
    ("key None", dict(key=None), TypeError, r"key: got None, expected a JAX PRNG key"),
    ("key numpy int64", dict(key=np.array([0, 1])), TypeError,
     r"key: got ndarray of dtype int64 and shape \(2,\), expected a JAX PRNG key"),
    ("key float", dict(key=jnp.array([0.0, 1.0])), TypeError, r"key: got ArrayImpl of dtype float64 .*expected a JAX PRNG key"),
    ("key uint32 wrong shape", dict(key=jnp.zeros(3, jnp.uint32)), TypeError,
     r"key: got ArrayImpl of dtype uint32 and shape \(3,\), expected a JAX PRNG key"),
    ("batch of keys", dict(key=jax.random.split(KEY, 3)), ValueError,
     r"key: got a batch of keys of shape \(3,\), expected one key"),
    ("init wrong shape", dict(init=jnp.zeros(3)), ValueError, r"init: got shape \(3,\), expected \(2,\)$"),
    ("init NaN", dict(init=jnp.array([0.0, jnp.nan])), ValueError, r"init: got non-finite values, expected finite"),
    ("init list of wrong length", dict(init=[0.0, 1.0, 2.0]), ValueError, r"init: got shape \(3,\), expected \(2,\)$"),
    ("init ragged list", dict(init=[[0.0], [1.0, 2.0]]), TypeError, r"init: got a ragged list, expected an array"),
    ("init unknown string", dict(init="mapp"), ValueError, r"init: got 'mapp', expected 'prior', 'map', 'modes', a ji.ModeMixture or a θ"),
    ("jitter<0", dict(jitter=-1.0), ValueError, r"jitter: got -1\.0, expected a finite number >= 0"),
    ("jitter NaN", dict(jitter=float("nan")), ValueError, r"jitter: got nan, expected a finite number >= 0"),
    ("unhashable option", dict(dense_mass=[True]), TypeError, r"options: got .*expected hashable values"),
    ("diagnose not bool", dict(diagnose="no"), TypeError, r"diagnose: got 'no' \(str\), expected True or False"),
]

SOLVE_MAP = [
    ("problem None", lambda: ji.solve_map(None, Y), TypeError, r"problem: got NoneType, expected a jinverse.InverseProblem"),
    ("max_steps=0", lambda: ji.solve_map(_linear(), Y, max_steps=0), ValueError, r"max_steps: got 0, expected an integer >= 1"),
    ("max_steps float", lambda: ji.solve_map(_linear(), Y, max_steps=10.0), TypeError,
     r"max_steps: got 10\.0 \(float\), expected an integer"),
    ("tol<0", lambda: ji.solve_map(_linear(), Y, tol=-1.0), ValueError, r"tol: got -1\.0, expected a positive number"),
    ("tol NaN", lambda: ji.solve_map(_linear(), Y, tol=float("nan")), ValueError, r"tol: got nan, expected a positive number"),
    ("num_starts=0", lambda: ji.solve_map(_linear(), Y, num_starts=0), ValueError,
     r"num_starts: got 0, expected an integer >= 1"),
    ("chunk_size=0", lambda: ji.solve_map(_linear(), Y, chunk_size=0), ValueError,
     r"chunk_size: got 0, expected an integer >= 1"),
    ("multi-start without key", lambda: ji.solve_map(_linear(), Y, num_starts=3), TypeError,
     r"key: got None, expected a JAX PRNG key \(num_starts > 1 draws starts from the prior\)"),
    ("multi-start key int", lambda: ji.solve_map(_linear(), Y, num_starts=3, key=5), TypeError,
     r"key: got int, expected a JAX PRNG key"),
    ("multi-start batch of keys", lambda: ji.solve_map(_linear(), Y, num_starts=2, key=jax.random.split(KEY, 3)),
     ValueError, r"key: got a batch of keys of shape \(3,\), expected one key"),
    ("init + starts batch of keys", lambda: ji.solve_map(_linear(), Y, init=jnp.zeros(2), num_starts=2,
                                                         key=jax.random.split(KEY, 2)),
     ValueError, r"key: got a batch of keys of shape \(2,\), expected one key"),
    ("init wrong shape", lambda: ji.solve_map(_linear(), Y, init=jnp.zeros(5)), ValueError,
     r"init: got shape \(5,\), expected \(2,\)$"),
    ("init wrong batched shape", lambda: ji.solve_map(_linear(), jnp.ones((3, 4)), init=jnp.zeros((2, 2))),
     ValueError, r"init: got shape \(2, 2\), expected \(2,\) or \(3, 2\)"),
    ("init a string", lambda: ji.solve_map(_linear(), Y, init="abc"), TypeError,
     r"init: got 'abc', expected an array of numbers shaped like θ"),
    ("optimizer string", lambda: ji.solve_map(_linear(), Y, optimizer="adam"), ValueError,
     r"optimizer: got 'adam', expected 'bfgs', 'lbfgs', 'newton', 'gauss-newton' or an optax GradientTransformation"),
    ("optimizer object", lambda: ji.solve_map(_linear(), Y, optimizer=3), TypeError, r"optimizer: got int, expected 'bfgs', 'lbfgs', 'newton'"),
]

def _map_result(batch):
    z = jnp.zeros(batch)
    one = ji.MAPResult(jnp.zeros((*batch, 2)), z, z, z.astype(int), z == 0, z.astype(int))
    starts = ji.MAPResult(jnp.zeros((*batch, 3, 2)), *(jnp.zeros((*batch, 3), d) for d in (float, float, int, bool, int)))
    return eqx.tree_at(lambda r: r.starts, one, starts, is_leaf=lambda x: x is None)


RESULTS = [
    ("MAPResult.distinct index out of range", lambda: _map_result((2,)).distinct((5,)), IndexError,
     r"index: got \(5,\), expected the index of one element of the batch shape \(2,\)"),
    ("MAPResult.distinct partial index", lambda: _map_result((2, 3)).distinct((1,)), IndexError,
     r"index: got \(1,\), expected the index of one element of the batch shape \(2, 3\)"),
]

LAPLACE = [
    ("at wrong shape", lambda: ji.laplace(_linear(), Y, at=jnp.zeros(3)), ValueError, r"at: got shape \(3,\), expected \(2,\)$"),
    ("at a string", lambda: ji.laplace(_linear(), Y, at="map"), TypeError,
     r"at: got 'map', expected an array of numbers shaped like θ"),
    ("at outside support", lambda: ji.laplace(ji.InverseProblem(A, P.LogNormal(jnp.zeros(2), 1.0), L.Gaussian(1.0)),
                                              Y, at=jnp.array([1.0, -1.0])),
     ValueError, r"at: got a θ outside the prior's support, expected a point inside it"),
]

LINEAR = [
    ("linear_gaussian method", lambda: ji.linear.linear_gaussian(_linear(), Y, method="qr"), ValueError,
     r"method: got 'qr', expected 'auto', 'dense' or 'cg'"),
    ("linear_gaussian y shape", lambda: ji.linear.linear_gaussian(_linear(), jnp.ones(3)), ValueError, r"y: got shape \(3,\)"),
    ("linear_gaussian y NaN", lambda: ji.linear.linear_gaussian(_linear(), NAN_Y), ValueError, r"y: got 1 non-finite"),
    ("linear_gaussian prior", lambda: ji.linear.linear_gaussian(
        ji.InverseProblem(A, P.Laplace(jnp.zeros(2), 1.0), L.Gaussian(1.0)), Y), TypeError,
     r"prior: got Laplace, expected a Gaussian prior"),
    ("linear_gaussian likelihood", lambda: ji.linear.linear_gaussian(
        ji.InverseProblem(A, P.Gaussian(jnp.zeros(2), 1.0), L.StudentT(3.0, 1.0)), Y), TypeError,
     r"likelihood: got StudentT, expected ji.likelihoods.Gaussian"),
    ("linear_gaussian nonlinear forward", lambda: ji.linear.linear_gaussian(
        ji.InverseProblem(lambda t: jnp.concatenate([t, t]) ** 2, P.Gaussian(jnp.zeros(2), 1.0), L.Gaussian(1.0)), Y),
     ValueError, r"problem: the forward model is not affine in θ, expected θ ↦ A θ \+ c"),
    ("tikhonov lam<0", lambda: ji.linear.tikhonov(A, Y, lam=-1.0), ValueError, r"lam: got -1\.0, expected values > 0"),
    ("tikhonov lam=0", lambda: ji.linear.tikhonov(A, Y, lam=0.0), ValueError, r"lam: got 0\.0, expected values > 0"),
    ("tikhonov lam name", lambda: ji.linear.tikhonov(A, Y, lam="gcvv"), ValueError,
     r"lam: got 'gcvv', expected a positive number or one of \('gcv', 'lcurve', 'discrepancy'\)"),
    ("tikhonov y shape", lambda: ji.linear.tikhonov(A, jnp.ones(3), lam=1.0), ValueError,
     r"y: got shape \(3,\), expected \(\*batch, 4\)"),
    ("tikhonov y NaN", lambda: ji.linear.tikhonov(A, NAN_Y, lam=1.0), ValueError, r"y: got 1 non-finite"),
    ("tikhonov A inf", lambda: ji.linear.tikhonov(A.at[0, 0].set(jnp.inf), Y, lam=1.0), ValueError, r"A: got 1 non-finite"),
    ("tikhonov A vector", lambda: ji.linear.tikhonov(jnp.ones(4), Y, lam=1.0), ValueError,
     r"A: got an array of shape \(4,\), expected a matrix \(m, n\)"),
    ("tikhonov discrepancy without noise", lambda: ji.linear.tikhonov(A, Y, lam="discrepancy"), ValueError,
     r"noise_std: got None, expected the noise standard deviation"),
    ("tikhonov noise_std<0", lambda: ji.linear.tikhonov(A, Y, lam="discrepancy", noise_std=-1.0), ValueError,
     r"noise_std: got -1\.0, expected values > 0"),
    ("tikhonov method", lambda: ji.linear.tikhonov(A, Y, lam=1.0, method="x"), ValueError,
     r"method: got 'x', expected 'auto', 'dense', 'cg' or 'krylov'"),
    ("tsvd k<0", lambda: ji.linear.tsvd(A, Y, k=-1), ValueError, r"k: got -1, expected integers in \[0, 2\]"),
    ("tsvd k too big", lambda: ji.linear.tsvd(A, Y, k=5), ValueError, r"k: got 5, expected integers in \[0, 2\]"),
    ("tsvd k fractional", lambda: ji.linear.tsvd(A, Y, k=1.5), ValueError, r"k: got 1\.5, expected integers"),
    ("tsvd k bool", lambda: ji.linear.tsvd(A, Y, k=True), ValueError, r"k: got True, expected integers"),
    ("tsvd k name", lambda: ji.linear.tsvd(A, Y, k="gccv"), ValueError, r"k: got 'gccv', expected an integer or one of"),
    ("tsvd y NaN", lambda: ji.linear.tsvd(A, NAN_Y, k=1), ValueError, r"y: got 1 non-finite"),
    ("difference_matrix n", lambda: ji.linear.difference_matrix(2), ValueError, r"n: got 2, expected an integer >= 3"),
    ("difference_matrix order", lambda: ji.linear.difference_matrix(5, order=3), ValueError, r"order: got 3, expected 1 or 2"),
    ("difference_matrix boundary", lambda: ji.linear.difference_matrix(5, boundary="x"), ValueError,
     r"boundary: got 'x', expected one of"),
]

PROBLEMS = [
    ("unknown problem", lambda: ji.problems.load("no_such_problem"), KeyError,
     r"name: got unknown problem 'no_such_problem'.*expected one of .*gaussian_linear"),
    ("misspelt problem", lambda: ji.problems.load("gaussian_linaer"), KeyError,
     r"name: got unknown problem 'gaussian_linaer' \(did you mean gaussian_linear"),
    ("problem name not str", lambda: ji.problems.load(3), KeyError, r"name: got unknown problem 3; expected one of"),
    ("unknown option", lambda: ji.problems.load("gaussian_linear", bogus=1), TypeError,
     r"options: got unknown option\(s\) bogus for problem 'gaussian_linear'; expected some of seed"),
]

SBC = [
    ("problem", lambda: ji.diagnostics.sbc("p", key=KEY), TypeError, r"problem: got str, expected a jinverse.InverseProblem"),
    ("key", lambda: ji.diagnostics.sbc(_linear(), key=1), TypeError, r"key: got int, expected a JAX PRNG key"),
    ("sampler", lambda: ji.diagnostics.sbc(_linear(), key=KEY, sampler="gibbs"), ValueError,
     r"sampler: got 'gibbs', expected one of \['chees', 'hmc', 'mala', 'mclmc', 'nuts', 'pcn', 'rwmh'\] or a callable"),
    ("num_simulations", lambda: ji.diagnostics.sbc(_linear(), key=KEY, num_simulations=1), ValueError,
     r"num_simulations: got 1, expected an integer >= 2"),
    ("thin", lambda: ji.diagnostics.sbc(_linear(), key=KEY, thin=0), ValueError, r"thin: got 0, expected an integer >= 1"),
    ("thin > draws", lambda: ji.diagnostics.sbc(_linear(), key=KEY, thin=50, num_samples=10), ValueError,
     r"thin: got 50, expected at most num_samples=10"),
    ("level", lambda: ji.diagnostics.sbc(_linear(), key=KEY, level=1.5), ValueError, r"level: got 1\.5, expected a number in \(0, 1\)"),
    ("num_bins", lambda: ji.diagnostics.sbc(_linear(), key=KEY, num_bins=1), ValueError,
     r"num_bins: got 1, expected an integer >= 2"),
    ("num_chains", lambda: ji.diagnostics.sbc(_linear(), key=KEY, num_chains=0), ValueError,
     r"num_chains: got 0, expected an integer >= 1"),
]


def _cases(table):
    return [pytest.param(fn, exc, match, id=name) for name, fn, exc, match in table]


@pytest.mark.parametrize("call, exc, match", _cases(PRIORS + LIKELIHOODS + PROBLEM + SOLVE_MAP + RESULTS + LAPLACE
                                                    + LINEAR + PROBLEMS + SBC))
def test_bad_argument(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


@pytest.mark.parametrize("solver", list(SOLVERS))
@pytest.mark.parametrize("data, exc, match", _cases(DATA))
def test_bad_data(solver, data, exc, match):
    problem, y = data()
    with pytest.raises(exc, match=match):
        SOLVERS[solver](problem, y)


@pytest.mark.parametrize("kwargs, exc, match", _cases(SAMPLE))
def test_bad_sample_argument(kwargs, exc, match):
    kwargs = {"key": KEY, **kwargs}
    with pytest.raises(exc, match=match):
        ji.sample(_linear(), Y, **kwargs)


def test_nothing_was_compiled():
    """Bad input is refused before anything is traced: no solver's compiled program runs."""
    from jinverse import sampling

    before = sampling._TRACES["count"]
    for kwargs in ({"num_chains": 0}, {"method": "nutz"}, {"key": 0}):
        with pytest.raises((ValueError, TypeError)):
            ji.sample(_linear(), Y, **{"key": KEY, **kwargs})
    with pytest.raises(ValueError):
        ji.sample(_linear(), NAN_Y, key=KEY)
    assert sampling._TRACES["count"] == before


def test_one_one_hot_label_is_warned_about():
    """One vector [0, 1, 0] may be one one-hot label or three labels (chance 1/9 for random
    labels): warned about, not refused; with a batch axis after the labels, accepted silently."""
    with pytest.warns(UserWarning, match=r"y: got shape \(3,\) holding 1 one-hot row of length 3 \(axis 0\).*"
                                         r"pass y\.argmax\(axis=0\) \(shape \(\)\)"):
        _counts(L.Categorical()).check_y(ONE_HOT)


def test_checks_that_let_good_data_through():
    """The new checks refuse only what they promise: K separate 0/1 labels given with a batch axis,
    a two-class [0, 1], a finite batch; y comes back in the problem's precision (a float32
    problem stays float32 under float64: no mixed-precision results)."""
    cat = _counts(L.Categorical())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cat.check_y(ONE_HOT[:, None])[1] == (3, 1)
        assert cat.check_y(jnp.array([0, 2, 1]))[1] == (3,)
    two = ji.InverseProblem(lambda t: t, P.Gaussian(jnp.zeros(2), 1.0), L.Categorical())
    assert two.check_y(jnp.array([0, 1]))[1] == (2,)
    assert _linear().check_y(jnp.ones((1000, 4)))[1] == (1000,)
    problem32 = ji.InverseProblem(A.astype(F32), P.Gaussian(jnp.zeros(2, F32), F32(1.0)), L.Gaussian(F32(0.5)))
    y, _ = problem32.check_y(np.ones(4))  # float64 data into a float32 problem
    assert y.dtype == jnp.float32
    y, _ = _linear().check_y(np.ones(4, np.float32))  # float32 data into a float64 problem
    assert y.dtype == jnp.float64
