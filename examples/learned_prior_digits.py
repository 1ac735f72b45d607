"""Can a prior learned from examples beat hand-made priors when deblurring small digit images?

8x8 digit-like images (seven-segment digits 0-9 drawn with random position, size, slant, stroke
width and brightness, generated here) are blurred by a Gaussian kernel and observed with noise.
We reconstruct them by MAP under three priors on the same forward model and likelihood:

- a Gaussian prior, N(mean image, per-pixel std²) fitted to the training images;
- total variation (piecewise-constant images), its weight chosen on validation images;
- a learned decoder prior: a variational autoencoder trained on the training images
  (`ji.amortized.train_decoder`), θ = g(z) with z ~ N(0, I_8); MAP runs in z
  (`ji.amortized.latent_problem`, several starts), and the answer is g(z_MAP).

The learned prior knows what digits look like; it is only a prior for images of this family.

Run:  python examples/learned_prior_digits.py        (quick:  JINVERSE_QUICK=1 or --quick)
"""

import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import jinverse as ji

QUICK = os.environ.get("JINVERSE_QUICK") == "1" or "--quick" in sys.argv
jax.config.update("jax_enable_x64", True)

N = 8  # image side
# seven segments (x0, y0, x1, y1) in a unit box: top, upper right, lower right, bottom, lower
# left, upper left, middle; and the segments each digit lights
SEGMENTS = np.array(
    [
        [0.25, 0.15, 0.75, 0.15],
        [0.75, 0.15, 0.75, 0.5],
        [0.75, 0.5, 0.75, 0.85],
        [0.25, 0.85, 0.75, 0.85],
        [0.25, 0.5, 0.25, 0.85],
        [0.25, 0.15, 0.25, 0.5],
        [0.25, 0.5, 0.75, 0.5],
    ]
)
LIT = np.array(
    [
        [1, 1, 1, 1, 1, 1, 0],
        [0, 1, 1, 0, 0, 0, 0],
        [1, 1, 0, 1, 1, 0, 1],
        [1, 1, 1, 1, 0, 0, 1],
        [0, 1, 1, 0, 0, 1, 1],
        [1, 0, 1, 1, 0, 1, 1],
        [1, 0, 1, 1, 1, 1, 1],
        [1, 1, 1, 0, 0, 0, 0],
        [1, 1, 1, 1, 1, 1, 1],
        [1, 1, 1, 1, 0, 1, 1],
    ],
    float,
)


def digits(key, num):
    """``num`` random 8x8 digit images in [0, ~1.2]: each pixel the brightness times a Gaussian
    profile of its distance to the nearest lit segment."""
    k = jax.random.split(key, 7)
    label = jax.random.randint(k[0], (num,), 0, 10)
    u = lambda i, lo, hi: jax.random.uniform(k[i], (num, 1), minval=lo, maxval=hi)  # noqa: E731
    shift_x, shift_y, size, slant = u(1, -0.08, 0.08), u(2, -0.08, 0.08), u(3, 0.85, 1.1), u(4, -0.2, 0.2)
    width, bright = u(5, 0.06, 0.1), u(6, 0.8, 1.2)
    seg = jnp.asarray(SEGMENTS)[None]  # (1, 7, 4); per image (num, 1) -> segment ends (num, 7)
    cx, cy = 0.5 + shift_x, 0.5 + shift_y

    def place(x, y):  # scale about the centre, slant (x moves with height)
        return cx + size * (x - 0.5) + slant * (0.5 - y), cy + size * (y - 0.5)

    x0, y0 = place(seg[..., 0], seg[..., 1])
    x1, y1 = place(seg[..., 2], seg[..., 3])
    g = (jnp.arange(N) + 0.5) / N
    px, py = jnp.meshgrid(g, g)  # (N, N): px the column's x, py the row's y
    px, py = px.reshape(1, 1, -1), py.reshape(1, 1, -1)
    dx, dy = x1 - x0, y1 - y0
    t = jnp.clip(
        ((px - x0[..., None]) * dx[..., None] + (py - y0[..., None]) * dy[..., None])
        / (dx**2 + dy**2)[..., None],
        0.0,
        1.0,
    )
    dist2 = (px - x0[..., None] - t * dx[..., None]) ** 2 + (py - y0[..., None] - t * dy[..., None]) ** 2
    ink = jnp.exp(-0.5 * dist2 / width[..., None] ** 2) * jnp.asarray(LIT)[label][..., None]  # (num, 7, N*N)
    return (bright * jnp.max(ink, axis=1)).reshape(num, N, N)


def blur_operator(sigma=1.0):
    """The 64 x 64 matrix of a Gaussian blur (std ``sigma`` pixels, zero outside the image)."""
    g = np.arange(N)
    rows = np.exp(-0.5 * ((g[:, None] - g[None, :]) / sigma) ** 2)
    rows /= rows.sum(1, keepdims=True)
    return jnp.asarray(np.kron(rows, rows))


def main():
    n_train, n_test, n_val = (2000, 10, 10) if QUICK else (20000, 100, 40)
    steps, starts = (200, 2) if QUICK else (2000, 8)
    latent_dim, noise = 8, 0.05
    train = digits(jax.random.key(0), n_train)
    truth = digits(jax.random.key(1), n_test + n_val)
    B = blur_operator()
    blur = lambda img: (B @ img.reshape(-1)).reshape(N, N)  # noqa: E731
    y = jax.vmap(blur)(truth) + noise * jax.random.normal(jax.random.key(2), truth.shape)
    test, val = slice(0, n_test), slice(n_test, None)
    lik = ji.likelihoods.Gaussian(noise)
    print(
        f"deblurring {n_test} 8x8 digit images: Gaussian blur (std 1 pixel), noise std {noise}; "
        f"{n_train} training images"
    )

    def rel(est, which):  # median relative error ||θ - θ_true|| / ||θ_true||
        e, t = np.asarray(est).reshape(-1, N * N), np.asarray(truth[which]).reshape(-1, N * N)
        return float(np.median(np.linalg.norm(e - t, axis=1) / np.linalg.norm(t, axis=1)))

    results = {}
    gauss = ji.InverseProblem(blur, ji.priors.Gaussian(train.mean(0), train.std(0) + 1e-3), lik)
    t0 = time.perf_counter()
    results["Gaussian (training mean, per-pixel std)"] = ji.solve_map(gauss, y[test], warn=False).theta
    print(
        f"  MAP, Gaussian prior:          relative error {rel(results['Gaussian (training mean, per-pixel std)'], test):.3f}"
        f"   ({time.perf_counter() - t0:.1f} s)"
    )

    best = None
    for w in (0.1, 0.3, 1.0, 3.0):  # the TV weight that does best on validation images
        tv = ji.InverseProblem(blur, ji.priors.TotalVariation((N, N), weight=w, smoothing=1e-2), lik)
        err = rel(ji.solve_map(tv, y[val], warn=False).theta, val)
        best = (err, w, tv) if best is None or err < best[0] else best
    t0 = time.perf_counter()
    results[f"total variation (weight {best[1]:g})"] = tv_theta = ji.solve_map(
        best[2], y[test], warn=False
    ).theta
    print(
        f"  MAP, total variation (w={best[1]:g}):  relative error {rel(tv_theta, test):.3f}"
        f"   ({time.perf_counter() - t0:.1f} s; weight chosen on {n_val} validation images)"
    )

    t0 = time.perf_counter()
    g = ji.amortized.train_decoder(train, latent_dim, jax.random.key(3), num_steps=steps)
    train_s = time.perf_counter() - t0
    latent = ji.amortized.latent_problem(gauss, g, latent_dim)
    t0 = time.perf_counter()
    z = ji.solve_map(latent, y[test], num_starts=starts, key=jax.random.key(4), warn=False).theta
    results["learned decoder g(z)"] = dec_theta = ji.amortized.decode(g, z)
    print(
        f"  MAP, learned decoder prior:   relative error {rel(dec_theta, test):.3f}"
        f"   ({time.perf_counter() - t0:.1f} s, {starts} starts in z; VAE training {train_s:.0f} s, {steps} steps)"
    )
    errors = {k: rel(v, test) for k, v in results.items()}
    print(f"  best here: {min(errors, key=errors.get)}")

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from jinverse import plots
    except ImportError:
        return
    rows = {"truth": truth[test], "observed": y[test], **results}
    fig, axes = plt.subplots(len(rows), 6, figsize=(7, 1.3 * len(rows)))
    for r, (name, imgs) in enumerate(rows.items()):
        for c in range(6):
            axes[r, c].imshow(np.asarray(imgs[c]), cmap="gray_r", vmin=-0.1, vmax=1.2)
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
        axes[r, 0].set_ylabel(name.split(" (")[0], fontsize=7, rotation=0, ha="right", va="center")
    fig.suptitle("deblurring 8x8 digits: MAP under three priors", fontsize=9)
    fig.subplots_adjust(left=0.2)
    out = os.path.join(os.environ.get("JINVERSE_OUT", "jinverse_out/examples"), "learned_prior_digits.png")
    print("wrote", plots.save(fig, out))


if __name__ == "__main__":
    main()
