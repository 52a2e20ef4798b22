"""Shared by every site of one job (same process, same custom/ module): counts the sites that are
inside a task right now and the tasks taken so far, and holds a meeting point for two sites."""

import threading

_lock = threading.Lock()
_inside = 0
_taken = 0

# site-1 and site-2 meet here inside their first task: both scripts are then provably running at
# the same time. If they cannot be (sites run one after another), the wait breaks after 30 s and
# the script raises, failing the job instead of hanging it.
pair = threading.Barrier(2, timeout=30)


def enter() -> tuple[int, int]:
    """A site took a task: (sites inside a task now, tasks taken so far), this one included."""
    global _inside, _taken
    with _lock:
        _inside += 1
        _taken += 1
        return _inside, _taken


def leave() -> None:
    global _inside
    with _lock:
        _inside -= 1
