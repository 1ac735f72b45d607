"""The status of a sampling run: the `Status` flags of each observation (`Status` is
`jinverse.status.SamplingStatus`), the limits that set them (R-hat, bulk ESS, separate modes),
one readable message per kind of problem, and the `SamplingWarning` that carries them
(`jinverse.posterior` re-exports every name here).

Host-side code on already computed diagnostics: the drivers call it once per run, never the
core.
"""

from __future__ import annotations

import warnings as _warnings

import numpy as np

from .status import SamplingStatus as Status  # (the name this module always had)

RHAT_LIMIT = 1.01
ESS_PER_CHAIN = 100  # bulk ESS below 100 per chain is flagged (Vehtari et al. 2021)
# Chains "in separate modes": each chain stationary on its own (the split R-hat of its two halves
# at most SELF_RHAT_LIMIT, Gelman & Rubin's original 1.1 rule) while the chains together give an
# R-hat above it: the disagreement is between chains, not a slow drift within them.
SELF_RHAT_LIMIT = 1.1
# ... and the chains' means at least this many within-chain standard deviations apart in some
# parameter: chains sampling one distribution have means within ~2 sd / sqrt(ESS per chain) of
# each other, so 2 sd apart means each chain sits in a region the others do not visit.
MODE_SEPARATION = 2.0


class SamplingWarning(UserWarning):
    """A posterior whose draws should not be trusted as they are (see `Posterior.warnings`)."""


UNCHECKED_MESSAGE = "R-hat and ESS not computed (diagnose=False)"


def sampling_flags(diag: dict, num_chains: int, xp=np):
    """The `Status` flags of each observation from its diagnostics: the one rule, used by the host
    drivers (``xp`` NumPy, through `status_and_warnings`) and by ``ji.sample`` under a
    transformation (``xp`` ``jax.numpy``, in the traced program).

    ``diag``: ``max_rhat``, ``min_ess``, ``num_divergent``, ``finite`` per observation, and
    optionally ``checked`` (default True: R-hat and ESS computed; where not, `Status.UNCHECKED`
    replaces their checks), ``metric_fallback`` (default False: `Status.METRIC_FALLBACK`) and
    ``separate_modes`` (default False: `Status.MULTIMODAL` where checked).
    """
    rhat, ess = xp.asarray(diag["max_rhat"]), xp.asarray(diag["min_ess"])

    def per_observation(key, default=None):
        value = diag[key] if default is None else diag.get(key, default)
        return xp.broadcast_to(xp.asarray(value, bool), rhat.shape)

    finite, checked = per_observation("finite"), per_observation("checked", True)
    flags = ((~finite, Status.NONFINITE),
             (checked & finite & ~(rhat <= RHAT_LIMIT), Status.HIGH_RHAT),
             (checked & finite & (ess < ESS_PER_CHAIN * num_chains), Status.LOW_ESS),
             (xp.asarray(diag["num_divergent"]) > 0, Status.DIVERGENCES),
             (~checked, Status.UNCHECKED),
             (per_observation("metric_fallback", False), Status.METRIC_FALLBACK),
             (per_observation("separate_modes", False) & checked, Status.MULTIMODAL))
    status = xp.zeros(rhat.shape, xp.int32)
    for cond, flag in flags:
        status = status | xp.where(cond, xp.int32(int(flag)), xp.int32(0))
    return xp.asarray(status)  # (an array even for one observation)


def status_and_warnings(diag: dict, num_chains: int) -> tuple[np.ndarray, list[str]]:
    """Per-observation status flags and one message per kind of problem (host side).

    ``diag["checked"]`` (optional, default True): per observation, whether R-hat and ESS were
    computed; where not, `Status.UNCHECKED` replaces their checks. ``diag["metric_fallback"]``
    (optional, default False): where the ``"laplace"``/``"prior"`` metric fell back to the
    method's adapted one (`Status.METRIC_FALLBACK`).
    """
    status = sampling_flags(diag, num_chains)
    rhat, ess = np.asarray(diag["max_rhat"]), np.asarray(diag["min_ess"])
    div, finite = np.asarray(diag["num_divergent"]), np.asarray(diag["finite"])
    modes = (status & int(Status.MULTIMODAL)) != 0
    n = status.size
    of = "" if n == 1 else f" in {{}} of {n} posteriors"
    msgs = []

    def count(flag):
        return int(np.count_nonzero(status & int(flag)))

    if count(Status.NONFINITE):
        msgs.append("non-finite draws" + of.format(count(Status.NONFINITE))
                    + ": the sampler diverged to NaN/inf; check the model or start closer (init='map')")
    if count(Status.HIGH_RHAT):
        msgs.append(f"R-hat above {RHAT_LIMIT}" + of.format(count(Status.HIGH_RHAT))
                    + f" (worst {np.nanmax(np.where(finite, rhat, np.nan)):.4f}): chains disagree; "
                    "run longer or check for several modes")
    if count(Status.MULTIMODAL):
        sep = np.asarray(diag.get("mode_separation", np.nan), float)
        apart = (f", means up to {np.nanmax(np.where(modes, sep, np.nan)):.3g} within-chain standard "
                 "deviations apart" if np.any(np.isfinite(np.where(modes, sep, np.nan))) else "")
        msgs.append("multimodal posterior" + of.format(count(Status.MULTIMODAL))
                    + f": the chains sit in different modes (each stationary on its own, split R-hat <= "
                    f"{SELF_RHAT_LIMIT} within every chain, but R-hat > {SELF_RHAT_LIMIT} across them"
                    + apart + "), so running longer will not mix them and the share of draws per mode "
                    "is set by where the chains started, not by the posterior: use method='smc' "
                    "(tempered SMC weighs the modes), or init='modes' to start chains on every mode "
                    "found by ji.find_modes with their Laplace weights reported")
    if count(Status.LOW_ESS):
        msgs.append(f"bulk ESS below {ESS_PER_CHAIN} per chain" + of.format(count(Status.LOW_ESS))
                    + f" (smallest {np.nanmin(np.where(finite, ess, np.nan)):.0f} over {num_chains} "
                    f"chains, {ESS_PER_CHAIN * num_chains} needed): estimates are noisy; draw more samples")
    if count(Status.DIVERGENCES):
        msgs.append(f"{int(div.sum())} divergent transitions" + of.format(count(Status.DIVERGENCES))
                    + ": the sampler missed regions of high curvature, or the model gave a NaN/inf "
                    "log-density; results may be biased")
    if count(Status.METRIC_FALLBACK):
        msgs.append("whitening metric not built" + of.format(count(Status.METRIC_FALLBACK))
                    + ": the mode search went non-finite or the curvature there is not positive definite; "
                    "sampled with the method's adapted metric instead (metric='diagonal')")
    if count(Status.UNCHECKED):
        msgs.append(UNCHECKED_MESSAGE + of.format(count(Status.UNCHECKED))
                    + ": convergence is unknown; call .diagnose() to compute them")
    return status, msgs


SMC_MIN_ESS = 100  # importance weights at β = 1 worth fewer particles than this are flagged


def smc_status_and_warnings(stats, finite, num_bad) -> tuple[np.ndarray, list[str]]:
    """Per-observation status flags and messages of a tempered SMC run (`jinverse.smc`).

    ``stats``: its `SMCStats` (``beta``, ``final_ess``, ``log_evidence``), ``finite``: whether
    every draw is finite, ``num_bad``: particles whose log-likelihood is not finite. R-hat is not
    a diagnostic of SMC (its "chains" are groups of particles), so only these are checked.
    """
    beta, ess = np.asarray(stats.beta), np.asarray(stats.final_ess)
    finite = np.asarray(finite) & np.isfinite(np.asarray(stats.log_evidence))
    status = np.zeros(beta.shape, np.int32)
    status |= np.where(~finite, int(Status.NONFINITE), 0).astype(np.int32)
    status |= np.where(beta < 1.0, int(Status.TEMPERING_INCOMPLETE), 0).astype(np.int32)
    status |= np.where(~(ess >= SMC_MIN_ESS), int(Status.LOW_ESS), 0).astype(np.int32)
    status |= np.where(np.asarray(num_bad) > 0, int(Status.DIVERGENCES), 0).astype(np.int32)
    of = "" if status.size == 1 else f" in {{}} of {status.size} posteriors"
    msgs = []

    def count(flag):
        return int(np.count_nonzero(status & int(flag)))

    if count(Status.NONFINITE):
        msgs.append("non-finite draws or evidence" + of.format(count(Status.NONFINITE))
                    + ": the model gave NaN/inf; check it")
    if count(Status.TEMPERING_INCOMPLETE):
        msgs.append("SMC stopped before the posterior" + of.format(count(Status.TEMPERING_INCOMPLETE))
                    + f" (smallest β reached {np.min(beta):.3g}): the draws and evidence are of a "
                    "tempered target; raise max_stages or the number of particles")
    if count(Status.LOW_ESS):
        msgs.append(f"SMC importance weights at β = 1 worth fewer than {SMC_MIN_ESS} particles"
                    + of.format(count(Status.LOW_ESS)) + ": use more particles")
    if count(Status.DIVERGENCES):
        msgs.append("particles with a non-finite log-likelihood" + of.format(count(Status.DIVERGENCES)))
    return status, msgs


def warn(messages, stacklevel: int = 2) -> None:
    """Emit a `SamplingWarning` for the problems found; not for a skipped diagnosis (asked for)."""
    shown = [m for m in messages if not m.startswith(UNCHECKED_MESSAGE)]
    if shown:
        _warnings.warn("; ".join(shown), SamplingWarning, stacklevel=stacklevel + 1)
