"""Which inputs make my trained classifier say class k?

A small equinox MLP is trained (here, in a few seconds) to sort points of the square [-2, 2]^2
into 3 classes by angle. We then invert it: for each class k, MAP with several starts finds
inputs the network puts in class k with high confidence, and NUTS draws the whole posterior over
inputs p(x | class k) ∝ softmax(f(x))_k under a uniform prior on the square — the region of input
space the network calls class k. We check the answers against the rule the network learned.

Run:  python examples/invert_classifier.py        (quick:  JINVERSE_QUICK=1 or --quick)
"""

import os
import sys

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

import jinverse as ji

QUICK = os.environ.get("JINVERSE_QUICK") == "1" or "--quick" in sys.argv
jax.config.update("jax_enable_x64", True)
K = 3


def true_class(x):
    """The rule the network is taught: which third of the circle x points to."""
    angle = jnp.arctan2(x[..., 1], x[..., 0]) + jnp.pi
    return jnp.minimum((angle / (2 * jnp.pi / K)).astype(int), K - 1)


def train(key, steps):
    k_model, k_data = jax.random.split(key)
    model = eqx.nn.MLP(2, K, 32, 2, activation=jax.nn.tanh, key=k_model)
    x = jax.random.uniform(k_data, (2048, 2), minval=-2.0, maxval=2.0)
    labels = true_class(x)
    opt = optax.adam(1e-2)

    @eqx.filter_jit
    def step(model, state):
        loss, grads = eqx.filter_value_and_grad(
            lambda m: optax.softmax_cross_entropy_with_integer_labels(jax.vmap(m)(x), labels).mean())(model)
        updates, state = opt.update(grads, state, model)
        return eqx.apply_updates(model, updates), state, loss

    state = opt.init(eqx.filter(model, eqx.is_array))
    for _ in range(steps):
        model, state, loss = step(model, state)
    accuracy = float(jnp.mean(jnp.argmax(jax.vmap(model)(x), -1) == labels))
    return model, accuracy


def main():
    key = jax.random.key(0)
    model, acc = train(key, 100 if QUICK else 800)
    print(f"trained a {K}-class MLP, training accuracy {acc:.3f}")

    # The inverse problem: unknown input x in the square, observed label k, Categorical likelihood.
    problem = ji.InverseProblem(model, ji.priors.Uniform(-2.0 * jnp.ones(2), 2.0 * jnp.ones(2)),
                                ji.likelihoods.Categorical())
    labels = jnp.arange(K)

    # 1) MAP with several starts per class: the most confident inputs.
    res = ji.solve_map(problem, labels, num_starts=4 if QUICK else 8, key=key)
    probs = jax.nn.softmax(jax.vmap(model)(res.theta), -1)
    print("\nMAP (best of several starts): an input the network is surest is class k")
    for k in range(K):
        x = np.asarray(res.theta[k])
        print(f"  class {k}: x = [{x[0]:+.3f}, {x[1]:+.3f}]  p(k|x) = {float(probs[k, k]):.3f}  "
              f"true rule says {int(true_class(res.theta[k]))}  ({res.messages()[k]})")

    # 2) The posterior over inputs: every input the network could have seen for label k.
    post = ji.sample(problem, labels, key=key, num_chains=2 if QUICK else 4,
                     num_warmup=100 if QUICK else 500, num_samples=100 if QUICK else 1000)
    draws = post.samples.reshape(K, -1, 2)
    predicted = jnp.argmax(jax.vmap(jax.vmap(model))(draws), -1)
    print("\nPosterior p(x | class k): where the network puts class k")
    for k in range(K):
        agree = float(jnp.mean(predicted[k] == k))
        rule = float(jnp.mean(true_class(draws[k]) == k))
        mean = np.asarray(draws[k].mean(0))
        print(f"  class {k}: mean x = [{mean[0]:+.2f}, {mean[1]:+.2f}], network says k for {agree:.0%} "
              f"of draws, the true rule for {rule:.0%};  R-hat {float(post.max_rhat[k]):.3f}")

    out = os.environ.get("JINVERSE_OUT", "jinverse_out/examples")
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return
    fig = Figure(figsize=(5.2, 5), layout="constrained")
    ax = fig.subplots()
    for k in range(K):
        d = np.asarray(draws[k])
        ax.scatter(d[:, 0], d[:, 1], s=4, alpha=0.5, label=f"posterior draws, class {k}")
        ax.plot(*np.asarray(res.theta[k]), "*", ms=14, mec="black", color=ax.collections[-1].get_facecolor()[0])
    ax.set(xlim=(-2, 2), ylim=(-2, 2), xlabel="x[0]", ylabel="x[1]", aspect="equal",
           title="Which inputs does the network put in class k? (stars: MAP)")
    ax.legend(fontsize="small", loc="lower right")
    os.makedirs(out, exist_ok=True)
    fig.savefig(os.path.join(out, "invert_classifier.png"), dpi=110)
    print("\nwrote", os.path.join(out, "invert_classifier.png"))


if __name__ == "__main__":
    main()
