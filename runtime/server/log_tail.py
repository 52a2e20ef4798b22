"""A job's log file read as TailLog sends it: its last lines, then (following) what is appended
until the job has ended and the file stayed quiet a while; whole lines, in bounded chunks."""

from __future__ import annotations

import os
import threading
from typing import BinaryIO, Callable, Iterator

CHUNK_SIZE = 1024 * 1024      # bytes read (and sent) at a time
TAIL_POLL = 0.2               # seconds between looks at a followed log file
TAIL_QUIET_POLLS = 5          # a followed log ends once the job is done and it stayed this many polls unchanged
_TAIL_BLOCK = 64 * 1024


def _tail_start(f: BinaryIO, lines: int) -> int:
    """The offset where the last `lines` lines of `f` start (negative: 0, the whole file)."""
    end = f.seek(0, os.SEEK_END)
    if lines < 0:
        return 0
    if lines == 0:
        return end
    pos, count = end, 0
    while pos > 0:
        size = min(_TAIL_BLOCK, pos)
        pos -= size
        f.seek(pos)
        block = f.read(size)
        i = len(block)
        while (i := block.rfind(b"\n", 0, i)) >= 0:
            if pos + i == end - 1:  # the newline that ends the file ends the last line
                continue
            count += 1
            if count == lines:
                return pos + i + 1
    return 0


def _whole_lines(pending: bytearray, final: bool) -> bytes:
    """Take from `pending` what can be sent: its complete lines (everything when `final`, or
    when one line outgrows a chunk, so memory stays bounded)."""
    whole = pending.rfind(b"\n") + 1
    cut = len(pending) if final or (not whole and len(pending) >= CHUNK_SIZE) else whole
    out = bytes(pending[:cut])
    del pending[:cut]
    return out


def log_lines(f: BinaryIO, lines: int, follow: bool, active: Callable[[], bool],
              job_done: Callable[[], bool], stop: threading.Event,
              refresh: Callable[[], None] = lambda: None) -> Iterator[str]:
    """The text of `f` from its last `lines` lines (negative: all) on, in whole lines; with
    `follow`, then what is appended, until `job_done()` and the file stayed unchanged a while,
    or until `active()` is false (the caller went away; `stop` wakes the wait at once).
    `refresh()` is called before each look for more (it writes what the file's writer holds)."""
    with f:
        f.seek(_tail_start(f, lines))
        pending = bytearray()
        done = False  # the job has ended: stop once the file stays unchanged a while
        quiet = 0
        while active():
            data = f.read(CHUNK_SIZE)
            if data:
                pending += data
                quiet = 0
                if text := _whole_lines(pending, final=False):
                    yield text.decode("utf-8", errors="replace")
                continue
            if not follow or (done and quiet >= TAIL_QUIET_POLLS):
                break
            refresh()
            if os.fstat(f.fileno()).st_size < f.tell():  # truncated: start over
                f.seek(0)
                continue
            if done:
                quiet += 1
            else:
                done = job_done()
            stop.wait(TAIL_POLL)
        if pending and active():
            yield _whole_lines(pending, final=True).decode("utf-8", errors="replace")
