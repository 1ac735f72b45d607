"""Amortised (learned) inversion, checked and refined by the exact solvers.

Networks trained once on simulated pairs (θ ~ prior, y ~ p(y | θ), drawn by the problem's own
``simulate``) answer any new observation in one forward pass:

- `train_point_estimator` -> `PointEstimator`: y -> θ, an estimate of the posterior mean; pass it
  as ``ji.solve_map(problem, y, init=net)`` to start the exact MAP search from its answer.
- `train_mixture_density` -> `MixtureDensity`: a Gaussian-mixture q(θ | y) with ``log_prob`` and
  ``sample`` (draws usable as ``ji.sample(..., init=q.sample(key, y, num_chains))``).

The exact log-posterior then says, per observation, how far to trust them: `map_report` (the MAP
objective gap of the point estimate) and `importance_sample` (the effective sample size of q
weighted by the exact density, and the self-normalised importance posterior as a cheap corrected
answer). As the proposal of exact samplers (`independence_sample`: independence
Metropolis-Hastings; `smc_sample`: tempered SMC from q to the posterior) q makes exact posterior
draws cheaper where it is good and only slower where it is not. `save` / `load` keep a trained
network with its problem's `fingerprint`.

Learned priors: `train_decoder` fits a variational autoencoder to example θs; `latent_problem`
rewrites a problem over the decoder's code z ~ N(0, I) (θ = g(z)), so every solver runs there.

Example::

    import jax, jinverse as ji
    bench = ji.problems.load("gaussian_linear", batch=1000)
    q = ji.amortized.train_mixture_density(bench.problem, jax.random.key(0), progress=True)
    r = ji.amortized.importance_sample(q, bench.y, jax.random.key(1))
    r.ess_fraction          # (1000,): near 1 where q matches the exact posterior
"""

from .checks import ImportanceResult as ImportanceResult
from .checks import MAPReport as MAPReport
from .checks import importance_sample as importance_sample
from .checks import map_report as map_report
from .estimators import MixtureDensity as MixtureDensity
from .estimators import PointEstimator as PointEstimator
from .estimators import fingerprint as fingerprint
from .io import load as load
from .io import save as save
from .latent import Decoder as Decoder
from .latent import decode as decode
from .latent import latent_problem as latent_problem
from .latent import train_decoder as train_decoder
from .proposal import independence_sample as independence_sample
from .proposal import smc_sample as smc_sample
from .training import simulate_pairs as simulate_pairs
from .training import train_mixture_density as train_mixture_density
from .training import train_point_estimator as train_point_estimator
