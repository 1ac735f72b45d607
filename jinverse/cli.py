"""The ``jinverse`` command line."""

from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main():
    """jinverse: batched MAP inversion and posterior sampling for inverse problems, in JAX."""


@main.command()
@click.option("--seed", default=0, show_default=True, help="PRNG seed for the starts.")
def demo(seed):
    """Invert a trained classifier and a trained regressor for a batch of targets."""
    import jax

    jax.config.update("jax_enable_x64", True)
    from .demo import run

    run(echo=click.echo, seed=seed)


if __name__ == "__main__":
    main()
