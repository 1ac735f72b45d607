"""The ``jinverse`` command line: ``problems``, ``solve``, ``sample``, ``bench``, ``demo``.

Every command has ``--help``. Group options (before the command): ``--precision 32|64``,
``--quiet``, ``--no-cache``, ``--config FILE.toml`` (settings for repeatable runs, keys named as the flags; also
accepted after the command), ``--debug``.
Exit codes: 0 success, 1 a failure, 2 a usage error (unknown name, bad value), 3 `solve` wrote
its results but some observations did not converge (the summary's warning line says which).
"""

from __future__ import annotations

from . import _run  # noqa: F401  (registers solve, sample, bench on the group)
from ._main import main as main
