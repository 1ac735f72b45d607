"""ji.sample over several devices: runs in a fresh process with 8 virtual CPU devices."""

import pathlib
import subprocess
import sys

SCRIPTS = pathlib.Path(__file__).parent / "scripts"


def test_sample_sharded_over_8_devices_equals_one_device():
    proc = subprocess.run([sys.executable, str(SCRIPTS / "sharded_sample.py")], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "OK" in proc.stdout
