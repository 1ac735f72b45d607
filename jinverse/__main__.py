"""``python -m jinverse``: the ``jinverse`` command (`jinverse_cli`)."""

from jinverse_cli import main

main(prog_name="jinverse")
