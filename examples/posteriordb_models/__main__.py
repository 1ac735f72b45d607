"""Sample the eight posteriordb models with NUTS and print each posterior's summary.

``PYTHONPATH=examples python -m posteriordb_models [name ...]`` (``JINVERSE_QUICK=1``: short chains).
"""

from __future__ import annotations

import os
import sys

import jax

from posteriordb_models import MODELS, build
from posteriordb_models.models import stan_init

jax.config.update("jax_enable_x64", True)


def main(names) -> None:
    quick = bool(os.environ.get("JINVERSE_QUICK"))
    warmup, draws = (200, 200) if quick else (1000, 1000)
    for name in names or MODELS:
        problem, y = build(name)
        key_init, key = jax.random.split(jax.random.key(0))
        post = jax_sample(problem, y, key, stan_init(problem, key_init, 4), warmup, draws)
        print(f"== {name}: {warmup} warmup + {draws} draws x 4 chains")
        print(post.summary())


def jax_sample(problem, y, key, init, warmup, draws):
    import jinverse as ji

    return ji.sample(problem, y, key=key, method="nuts", num_chains=4, num_warmup=warmup, num_samples=draws,
                     init=init, metric="diagonal")


if __name__ == "__main__":
    main(sys.argv[1:])
