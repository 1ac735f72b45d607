"""DAPPER's ``Var4D`` for benchmarks/assimilation_hybrid.py ``--part dapper``: run in DAPPER's own
virtual environment (as benchmarks/assimilation_dapper_peer.py), never imported by jinverse.

DAPPER 1.8.1's ``Var4D`` stops with an IndexError on its first window: it takes the observation
operator at time ``ko`` (``Obs = HMM.Obs(ko)``) and then calls it with ``ko`` again
(``Obs(ko).linear(x)``, ``Obs(ko)(x)``). This script mends those two calls in memory, in the
method's own source, and changes nothing else.

    /tmp/dapper-venv/bin/python benchmarks/assimilation_var4d_peer.py OUT.npz SEED KO LAG XB

On ``mods.Lorenz96.sakov2008`` with ``KO + 1`` observation times; writes the truth ``xx``, the
observations ``yy``, ``mu``, the burn-in (observation times with ``t <= BurnIn``), the time-mean
analysis RMSE after it (``err.rms.a``), the analysis RMSE per observation time and the wall time
of ``assimilate``.
"""

import inspect
import sys
import textwrap
import time

import numpy as np


def main():
    out, seed, ko, lag, xb = (
        sys.argv[1],
        int(sys.argv[2]),
        int(sys.argv[3]),
        int(sys.argv[4]),
        float(sys.argv[5]),
    )
    import dapper as dpr
    import dapper.da_methods.variational as var
    import dapper.tools.progressbar as pb

    pb.disable_progbar = True
    dpr.rc.liveplotting = False
    src = textwrap.dedent(inspect.getsource(var.Var4D._assimilate))
    fixed = src.replace("Obs(ko).linear(x)", "Obs.linear(x)").replace("xo = Obs(ko)(x)", "xo = Obs(x)")
    if fixed == src:
        raise SystemExit("Var4D: the two calls to mend were not found (another DAPPER version?)")
    namespace = dict(vars(var))
    exec(fixed, namespace)
    var.Var4D._assimilate = namespace["assimilate"]
    from dapper.mods.Lorenz96.sakov2008 import HMM

    HMM.tseq.Ko = ko
    dpr.set_seed(seed)
    xx, yy = HMM.simulate()
    yy = np.stack(list(yy))
    tto = np.asarray(HMM.tseq.tto)
    xp = var.Var4D(Lag=lag, xB=xb)
    t = time.perf_counter()
    xp.assimilate(HMM, xx, yy, liveplots=False)
    wall = time.perf_counter() - t
    xp.stats.average_in_time()
    np.savez(
        out,
        xx=xx,
        yy=yy,
        mu=np.asarray(HMM.X0.mu),
        burn_in=int(np.sum(tto <= HMM.tseq.BurnIn)),
        rmse=float(xp.avrgs.err.rms.a.val),
        series=np.asarray(xp.stats.err.rms.a),
        wall=wall,
    )


if __name__ == "__main__":
    main()
