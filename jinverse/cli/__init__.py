"""What the ``jinverse`` commands do: ``problems``, ``solve``, ``sample``, ``bench``, ``demo``.

The command line itself (every flag, its help, usage errors) is `jinverse_cli`, a module outside
this package so that ``jinverse --help`` needs click alone; it imports this module to run a
command, calling the function of the command's name with the parsed values. ``main`` is that
command group (for ``click.testing.CliRunner`` and ``main([...])``).
"""

from __future__ import annotations

from jinverse_cli import main as main

from ._run import bench as bench
from ._run import demo as demo
from ._run import problems as problems
from ._run import sample as sample
from ._run import solve as solve
