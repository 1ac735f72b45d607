"""ji.sample(..., checkpoint=PATH): resume after an interruption (a raised error, a SIGKILL) gives
the draws of an uninterrupted run bit for bit; a checkpoint of other settings is refused."""

import signal
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import pytest

import jinverse as ji

pytestmark = pytest.mark.filterwarnings("ignore::jinverse.posterior.SamplingWarning")

SETUP = """
import jax
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
import numpy as np
import jinverse as ji

rng = np.random.default_rng(0)
A = rng.normal(size=(8, 3))
problem = ji.InverseProblem(jnp.asarray(A), ji.priors.Gaussian(jnp.zeros(3), 1.0),
                            ji.likelihoods.Gaussian(1.0))
Y = jnp.asarray(rng.normal(size=(3, 8)))
ARGS = dict(key=jax.random.key(1), method="rwmh", num_warmup=60, num_samples=40)
"""
env = {}
exec(SETUP, env)  # the same problem, data and settings as the killed subprocess
problem, Y, ARGS = env["problem"], env["Y"], env["ARGS"]


class Stop(Exception):
    pass


@pytest.fixture(scope="module")
def uninterrupted():
    return ji.sample(problem, Y, **ARGS)


def test_resume_after_interruption_equals_uninterrupted(tmp_path, uninterrupted):
    path = tmp_path / "run.npz"
    seen = []

    def stop_after_two_chunks(done, total):
        seen.append((done, total))
        if len(seen) == 2:
            raise Stop

    with pytest.raises(Stop):
        ji.sample(problem, Y, checkpoint=path, checkpoint_every=7, progress=stop_after_two_chunks, **ARGS)
    assert seen == [(7, 40), (14, 40)]
    with np.load(path) as npz:
        assert int(npz["done"]) == 14 and npz["draws_0000"].shape == (3, 4, 14, 3)
    resumed = ji.sample(problem, Y, checkpoint=path, checkpoint_every=7, progress=lambda d, t: seen.append((d, t)), **ARGS)
    assert seen[2:] == [(21, 40), (28, 40), (35, 40), (40, 40)]  # from the third chunk on
    assert resumed.samples.shape == (3, 4, 40, 3)
    # batched y: every observation's draws and statistics equal the uninterrupted run's
    assert np.array_equal(resumed.samples, uninterrupted.samples)
    assert np.array_equal(resumed.stats.acceptance_rate, uninterrupted.stats.acceptance_rate)
    assert np.array_equal(resumed.status, uninterrupted.status)
    # a finished checkpoint gives the result again without sampling
    again = ji.sample(problem, Y, checkpoint=path, checkpoint_every=7, progress=lambda d, t: seen.append((d, t)), **ARGS)
    assert np.array_equal(again.samples, uninterrupted.samples) and len(seen) == 6

    # Settings that differ from the file's are refused, naming what differs.
    other = {"y": dict(y=Y + 1.0), "key": dict(key=jax.random.key(2)), "num_samples": dict(num_samples=41),
             "method": dict(method="mala"), "checkpoint_every": dict(checkpoint_every=8),
             "options": dict(target_acceptance_rate=0.3)}
    for field, change in other.items():
        kwargs = {**ARGS, "y": Y, "checkpoint_every": 7, **change}
        with pytest.raises(ValueError, match=f"checkpoint: .* different settings \\({field} differ"):
            ji.sample(problem, kwargs.pop("y"), checkpoint=path, **kwargs)
    (tmp_path / "junk.npz").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="checkpoint: could not read"):
        ji.sample(problem, Y, checkpoint=tmp_path / "junk.npz", **ARGS)


def test_resume_after_sigkill_equals_uninterrupted(tmp_path, uninterrupted):
    # A subprocess that sleeps after each chunk is killed with SIGKILL once two chunks are on
    # disk; this process then resumes from the file.
    path = tmp_path / "killed.npz"
    child = SETUP + textwrap.dedent(f"""
        import time
        def slow(done, total):
            print("chunk", done, flush=True)
            time.sleep(0.5)
        ji.sample(problem, Y[0], checkpoint={str(path)!r}, checkpoint_every=5, progress=slow, **ARGS)
        print("finished", flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    lines = []
    try:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 300:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("chunk 10"):
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "".join(lines)
    with np.load(path) as npz:
        assert 10 <= int(npz["done"]) < 40  # killed mid-run, after complete chunks
    seen = []
    resumed = ji.sample(problem, Y[0], checkpoint=path, checkpoint_every=5, progress=lambda d, t: seen.append(d),
                        **ARGS)
    assert seen[0] > 10 and seen[-1] == 40
    single = ji.sample(problem, Y[0], **ARGS)  # the uninterrupted run, same key
    assert np.array_equal(resumed.samples, single.samples)
    assert np.array_equal(resumed.stats.is_divergent, single.stats.is_divergent)


def test_checkpoint_arguments_checked(tmp_path):
    with pytest.raises(TypeError, match="checkpoint: got int"):
        ji.sample(problem, Y, checkpoint=3, **ARGS)
    with pytest.raises(ValueError, match="checkpoint_every"):
        ji.sample(problem, Y, checkpoint=tmp_path / "c.npz", checkpoint_every=0, **ARGS)
    assert not (tmp_path / "c.npz").exists()



def test_streaming_in_blocks_equals_one_block(uninterrupted):
    # (here to reuse the compiled one-block run) 3 observations in blocks of 2, the last padded:
    # the same draws, bit for bit, as one block, since each observation keeps its own key. Bit
    # for bit holds for random-walk Metropolis on this linear forward; gradients and nonlinear
    # forwards (tanh, where) are vectorised by XLA differently for 2 and 3 lanes, and then draws
    # agree to rounding (amplified by adaptation; chaotic for NUTS), not bit for bit.
    seen = []
    blocks = ji.sample(problem, Y, block_size=2, progress=lambda d, t: seen.append((d, t)), **ARGS)
    assert seen == [(2, 3), (3, 3)]
    assert np.array_equal(uninterrupted.samples, blocks.samples)
    assert np.array_equal(uninterrupted.stats.acceptance_rate, blocks.stats.acceptance_rate)


def test_replica_exchange_resumes_bit_for_bit(tmp_path):
    # Replica exchange with an adapted ladder, 3 observations: every replica's state, each
    # lane's ladder and the running swap sums are in the file, so the resumed run's draws, ladder
    # and swap acceptance (over the whole run) equal an uninterrupted run's.
    kw = {**ARGS, "num_samples": 20, "tempering": 4, "adapt_ladder": True}
    whole = ji.sample(problem, Y, **kw)
    path = tmp_path / "pt.npz"
    seen = []

    def stop_after_two_chunks(done, total):
        seen.append(done)
        if len(seen) == 2:
            raise Stop

    with pytest.raises(Stop):
        ji.sample(problem, Y, checkpoint=path, checkpoint_every=6, progress=stop_after_two_chunks, **kw)
    resumed = ji.sample(problem, Y, checkpoint=path, checkpoint_every=6, progress=lambda d, t: seen.append(d), **kw)
    assert seen == [6, 12, 18, 20]
    assert np.array_equal(resumed.samples, whole.samples)
    assert np.array_equal(resumed.stats.acceptance_rate, whole.stats.acceptance_rate)
    assert np.array_equal(resumed.tempering.betas, whole.tempering.betas)
    assert np.array_equal(resumed.tempering.swap_acceptance, whole.tempering.swap_acceptance)
    betas = np.asarray(whole.tempering.betas)
    assert betas.shape == (3, 4) and np.all(betas[:, 0] == 1) and np.all(betas[:, -1] == 0)
    assert np.all(np.diff(betas, axis=1) < 0)
    geometric = np.array(ji.tempering.ladder(4))
    assert not np.allclose(betas, geometric)  # the ladder was adapted, per observation
    # the ladder is part of the settings a checkpoint must agree on
    with pytest.raises(ValueError, match="different settings \\(tempering differ"):
        ji.sample(problem, Y, checkpoint=path, checkpoint_every=6, **{**kw, "adapt_ladder": False})
