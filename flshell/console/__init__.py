"""The operator's console: one command registry, one runner for the REPL and for scripts, one output layer.

`commands` holds REGISTRY (every command: arguments, help, completion hints, confirmation),
`script` the Runner that the REPL, `-c`, `-f`, stdin and `source` share, `render` the tables
and JSON. Importing this package does not import prompt_toolkit (the REPL lives in `repl`).
"""

from flshell.console.commands import REGISTRY, Command, CommandFailed, UsageError
from flshell.console.script import Runner, run_script

__all__ = ["Command", "CommandFailed", "REGISTRY", "Runner", "UsageError", "run_script"]
