"""Compatibility: the admin command runner moved to `flshell.console`; `from flshell.commands
import run_script` (and the exit-code names it used) keep working."""

from flshell.console.commands import REGISTRY, Command, UsageError
from flshell.console.script import Runner, parse_script, run_script, split_line
from flshell.exit_codes import CONNECTION as UNREACHABLE
from flshell.exit_codes import JOB_FAILED as FAILED
from flshell.exit_codes import JOB_UNSUCCESSFUL, OK, USAGE

__all__ = ["Command", "FAILED", "JOB_UNSUCCESSFUL", "OK", "REGISTRY", "Runner", "UNREACHABLE", "USAGE", "UsageError",
           "parse_script", "run_script", "split_line"]
