"""Every test run gets its own FLSHELL_HOME, so default folders (runtime.paths) never touch the
user's own; set here, before any flshell module computes a default, and inherited by the
processes the tests start."""

import os
import shutil
import tempfile

_HOME = tempfile.mkdtemp(prefix="flshell-tests-")
os.environ["FLSHELL_HOME"] = _HOME


def pytest_unconfigure(config):
    shutil.rmtree(_HOME, ignore_errors=True)
