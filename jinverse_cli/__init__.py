"""The ``jinverse`` command's entry point, outside the `jinverse` package so that starting it
imports click and nothing else: ``--help``, ``--version`` and usage errors answer in a few tens of
milliseconds, and JAX with the library is imported only when a command runs (`jinverse.cli`).

Every command has ``--help``. Group options (before the command): ``--precision 32|64``,
``--quiet``, ``--no-cache``, ``--no-server``, ``--config FILE.toml`` (settings for repeatable runs,
keys named as the flags; also accepted after the command), ``--debug``. While a ``jinverse server``
runs (`jinverse_cli.server`), ``solve``, ``sample``, ``bench`` and ``demo`` run in it.
Exit codes: 0 success, 1 a failure, 2 a usage error (unknown name, bad value), 3 `solve` wrote
its results but some observations did not converge (the summary's warning line says which), 130
interrupted (Ctrl-C).
"""

from .parser import main as main
