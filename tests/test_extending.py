"""docs/extending.md: its examples (a custom prior, a location-scale prior, a likelihood with an
unknown parameter, a non-elementwise bijector) run, in order and in one namespace, and their
checks against SciPy and quadrature hold."""

import pathlib
import re
import warnings

import jax.numpy as jnp
import numpy as np
import pytest

import jinverse as ji

DOC = pathlib.Path(__file__).resolve().parents[1] / "docs" / "extending.md"


def _blocks():
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)


@pytest.fixture(scope="module")
def namespace():
    ns = {}
    for i, code in enumerate(_blocks()):
        exec(compile(code, f"{DOC}:block{i}", "exec"), ns)
    return ns


def test_the_page_has_an_example_of_each_extension_point():
    text = "\n".join(_blocks())
    for base in ("ji.priors.AbstractPrior", "ji.priors.AbstractLocationScale", "ji.likelihoods.AbstractLikelihood",
                 "ji.bijectors.AbstractBijector", "ji.likelihoods.bind", "ji.sample("):
        assert base in text, base


def test_examples_run_and_their_checks_hold(namespace):
    # the last block sampled the triangle posterior; the earlier ones defined these
    for name in ("Weibull", "Logistic", "LaplaceNoise", "BelowOneMinusFirst", "UniformTriangle", "post"):
        assert name in namespace, name
    post = namespace["post"]
    assert post.samples.shape == (4, 500, 2)


def test_bad_arguments_get_the_promised_errors(namespace):
    with pytest.raises(ValueError, match="scale: got"):
        namespace["Weibull"](1.0, -2.0)
    with pytest.raises(ValueError, match="scale"):
        namespace["Logistic"](0.0, 0.0)
    with pytest.raises(ValueError, match="scale: got"):
        namespace["LaplaceNoise"](-1.0)


def test_the_sampling_check_catches_a_missing_jacobian(namespace):
    """The page says the quadrature check fails without the Jacobian term: it does."""
    bijector, triangle = namespace["BelowOneMinusFirst"], namespace["UniformTriangle"]

    class NoJacobian(bijector):
        def forward_log_det_jacobian(self, u):
            return jnp.zeros((), u.dtype)

    class Wrong(triangle):
        @property
        def bijector(self):
            return NoJacobian()

    good = namespace["post"]
    problem = ji.InverseProblem(lambda t: t, Wrong(), ji.likelihoods.Gaussian(0.2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ji.posterior.SamplingWarning)
        bad = ji.sample(problem, namespace["y"], key=namespace["key"], num_chains=4, num_warmup=300,
                        num_samples=500)
    se = np.asarray(good.std()) / np.sqrt(np.asarray(good.ess()))
    assert np.any(np.abs(np.asarray(bad.mean()) - np.asarray(good.mean())) > 10 * se)
