"""One θ-flatten helper (issue 17): `problem.flat_leaves` on the device and its NumPy twin
`problem.flat_leaves_np` on the host; no module flattens θ pytrees by hand."""

import pathlib
import re

import jax.numpy as jnp
import numpy as np

import jinverse
from jinverse.problem import flat_leaves, flat_leaves_np

ROOT = pathlib.Path(jinverse.__file__).parent
# "leaves raveled after the lead axes and joined": a list comprehension over a pytree's leaves
# inside a concatenate
HAND_FLATTEN = re.compile(r"concatenate\(\s*\[[^\]]*for \w+ in (?:jax\.)?tree(?:_util)?\.(?:leaves|tree_leaves)\(")
NOT_THETA = {"problems/trained.py"}  # a trained network's weights, not a θ


def test_numpy_twin_equals_flat_leaves():
    tree = {"a": np.arange(24.0).reshape(2, 3, 4), "b": [np.ones((2, 3), np.float32), np.zeros((2, 3, 2, 2))]}
    for lead in (0, 1, 2):
        host = flat_leaves_np(tree, lead)
        assert isinstance(host, np.ndarray)
        np.testing.assert_array_equal(host, np.asarray(flat_leaves(jax_tree(tree), lead)))
    assert flat_leaves_np(tree, 2).shape == (2, 3, 4 + 1 + 4)
    assert flat_leaves_np({"x": np.ones((2, 3), np.float32)}, 1).dtype == np.float32  # no silent cast


def jax_tree(tree):
    return {"a": jnp.asarray(tree["a"]), "b": [jnp.asarray(b) for b in tree["b"]]}


def test_no_hand_written_theta_flatten_outside_problem():
    found = []
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT).as_posix()
        if rel == "problem.py" or rel in NOT_THETA:
            continue
        text = path.read_text()
        found += [f"{rel}: {m.group(0)[:60]}" for m in HAND_FLATTEN.finditer(text)]
    assert found == [], "flatten θ with problem.flat_leaves / flat_leaves_np"
