"""The DAPPER side of benchmarks/assimilation_enkf.py: run in DAPPER's own virtual environment
(DAPPER pins its own dependency versions), never imported by jinverse.

    /tmp/dapper-venv/bin/python benchmarks/assimilation_dapper_peer.py OUT.npz CONFIG SEED KO METHOD...

CONFIG is ``lorenz96`` (DAPPER's ``mods.Lorenz96.sakov2008``) or ``lorenz63``
(``mods.Lorenz63.sakov2012``); KO the number of observation times. Each METHOD is a DAPPER
constructor call such as ``EnKF('Sqrt',N=20,infl=1.04,rot=True)``. Writes the truth ``xx``, the
observations ``yy``, the first-ensemble distribution (``mu``, ``C``), the observation step, the
burn-in (observation times with ``t <= BurnIn``), and per method the time-mean analysis RMSE and
spread after the burn-in (DAPPER's ``err.rms.a`` / ``spread.rms.a``) and the wall time of
``assimilate`` (progress bar and live plots off).
"""

import sys
import time

import numpy as np


def main():
    out, config, seed, ko, *methods = sys.argv[1:]
    import dapper as dpr
    import dapper.da_methods as da
    import dapper.tools.progressbar as pb

    pb.disable_progbar = True
    dpr.rc.liveplotting = False
    if config == "lorenz96":
        from dapper.mods.Lorenz96.sakov2008 import HMM
    elif config == "lorenz63":
        from dapper.mods.Lorenz63.sakov2012 import HMM
    else:
        raise SystemExit(f"CONFIG: got {config!r}, expected lorenz96 or lorenz63")
    HMM.tseq.Ko = int(ko)
    dpr.set_seed(int(seed))
    xx, yy = HMM.simulate()
    yy = np.stack(list(yy))
    tto = np.asarray(HMM.tseq.tto)
    res = dict(xx=xx, yy=yy, mu=np.asarray(HMM.X0.mu), C=np.asarray(HMM.X0.C.full),
               dko=HMM.tseq.dko, burn_in=int(np.sum(tto <= HMM.tseq.BurnIn)),
               obs_std=np.sqrt(np.diag(HMM.Obs(0).noise.C.full)), version=dpr.__version__)
    names, rmse, spread, wall = [], [], [], []
    for text in methods:
        xp = eval(text, vars(da))  # a DAPPER constructor call from the command line
        dpr.set_seed(int(seed) + 1)
        t = time.perf_counter()
        xp.assimilate(HMM, xx, yy, liveplots=False)
        wall.append(time.perf_counter() - t)
        xp.stats.average_in_time()
        names.append(text)
        rmse.append(float(xp.avrgs.err.rms.a.val))
        spread.append(float(xp.avrgs.spread.rms.a.val))
    np.savez(out, names=np.array(names), rmse=np.array(rmse), spread=np.array(spread), wall=np.array(wall),
             **{k: np.asarray(v) for k, v in res.items()})


if __name__ == "__main__":
    main()
