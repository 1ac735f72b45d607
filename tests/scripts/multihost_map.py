"""Two processes on localhost (CPU), each holding half of a batch: one global MAP result.

Launch: python multihost_map.py PROCESS_ID NUM_PROCESSES PORT OUTFILE
Each process gets 2 CPU devices; the mesh spans all 4. Each process solves its own half of the
observations through ji.solve_map(..., mesh=global_mesh) and the halves are gathered.
"""

import sys

import jax

pid, nproc, port, outfile = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
jax.config.update("jax_num_cpu_devices", 2)
jax.config.update("jax_enable_x64", True)
jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=nproc, process_id=pid)
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import AxisType

import jinverse as ji

A = jax.random.normal(jax.random.key(0), (12, 5))
problem = ji.InverseProblem(lambda t: jnp.tanh(A @ t), ji.priors.Gaussian(jnp.zeros(5), 1.0),
                            ji.likelihoods.Gaussian(0.1))
Y = np.asarray(jax.random.normal(jax.random.key(1), (96, 12)) * 0.5)  # every process builds the same data
local = np.array_split(Y, nproc)[pid]  # ... and keeps its half
mesh = jax.make_mesh((len(jax.devices()),), ("batch",), axis_types=(AxisType.Auto,))
res = ji.solve_map(problem, local, mesh=mesh, chunk_size=4)
theta = multihost_utils.process_allgather(res.theta, tiled=True)
if pid == 0:
    np.save(outfile, np.asarray(theta))
print("process", pid, "local", res.theta.shape, "global", theta.shape, "converged", bool(jnp.all(res.converged)))
jax.distributed.shutdown()
