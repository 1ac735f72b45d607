"""``python -m jinverse_cli``: the ``jinverse`` command."""

from . import main

main(prog_name="jinverse")
