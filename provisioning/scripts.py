"""The shell scripts of a startup kit: start.sh / stop.sh (server, sites), flshell.sh (admins)."""

from __future__ import annotations

PID_FILE = "flshell.pid"  # in the participant folder (startup/..), never in the signed startup/
LOG_FILE = "stdout.log"

_HEAD = """\
#!/usr/bin/env bash
# {what} -- project {project}, startup kit of {name}.
# FLSHELL overrides the command that runs flshell (default: flshell on PATH).
set -euo pipefail
STARTUP="$(cd "$(dirname "${{BASH_SOURCE[0]}}")" && pwd)"
KIT="$(dirname "$STARTUP")"
PID_FILE="$KIT/{pid}"
"""

START = _HEAD + """\
LOG="$KIT/{log}"
FLSHELL="${{FLSHELL:-flshell}}"
# usage: start.sh [--foreground] [more `flshell {command}` options]
if [ -f "$PID_FILE" ] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null; then
    echo "{name} is already running (pid $(cat "$PID_FILE")); stop it with $STARTUP/stop.sh" >&2
    exit 1
fi
if [ "${{1:-}}" = "--foreground" ]; then
    shift
    echo $$ > "$PID_FILE"
    exec $FLSHELL {command} --startup "$KIT" "$@"
fi
nohup $FLSHELL {command} --startup "$KIT" "$@" >>"$LOG" 2>&1 </dev/null &
PID=$!
echo "$PID" > "$PID_FILE"
for _ in 1 2 3 4 5 6 7 8 9 10; do  # a kit that fails verification exits at once: say why
    sleep 0.2
    if ! kill -0 "$PID" 2>/dev/null; then
        rc=0; wait "$PID" || rc=$?
        rm -f "$PID_FILE"
        echo "{name} did not start (exit status $rc); the end of $LOG:" >&2
        tail -n 20 "$LOG" >&2
        exit 1
    fi
done
echo "{name} started (pid $PID); log: $LOG; stop it with $STARTUP/stop.sh"
"""

STOP = _HEAD + """\
# SIGTERM (the {command} drains and exits), then SIGKILL after STOP_TIMEOUT seconds (default 30).
if [ ! -f "$PID_FILE" ]; then
    echo "{name} is not running (no $PID_FILE)"
    exit 0
fi
PID="$(cat "$PID_FILE")"
if ! kill -0 "$PID" 2>/dev/null; then
    rm -f "$PID_FILE"
    echo "{name} is not running (removed a stale $PID_FILE)"
    exit 0
fi
kill -TERM "$PID"
deadline=$(( $(date +%s) + ${{STOP_TIMEOUT:-30}} ))
while kill -0 "$PID" 2>/dev/null; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
        echo "{name} (pid $PID) did not stop within ${{STOP_TIMEOUT:-30}}s; killing it" >&2
        kill -KILL "$PID" 2>/dev/null || true
        break
    fi
    sleep 0.1
done
rm -f "$PID_FILE"
echo "{name} stopped"
"""

ADMIN = """\
#!/usr/bin/env bash
# The flshell console as {name} ({role}, {org}) -- project {project}.
# Any flshell option works, e.g.: flshell.sh -c "list_jobs"
# FLSHELL overrides the command that runs flshell (default: flshell on PATH).
set -euo pipefail
STARTUP="$(cd "$(dirname "${{BASH_SOURCE[0]}}")" && pwd)"
KIT="$(dirname "$STARTUP")"
exec ${{FLSHELL:-flshell}} --startup "$KIT" "$@"
"""


def start_script(project: str, name: str, command: str) -> str:
    return START.format(what=f"Start the flshell {command} in the background",
                        project=project, name=name, command=command, pid=PID_FILE, log=LOG_FILE)


def stop_script(project: str, name: str, command: str) -> str:
    return STOP.format(what=f"Stop the flshell {command} that start.sh started",
                       project=project, name=name, command=command, pid=PID_FILE)


def admin_script(project: str, name: str, org: str, role: str) -> str:
    return ADMIN.format(project=project, name=name, org=org, role=role)
