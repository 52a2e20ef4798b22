"""Site side of launch_external_process: the script runs in its own Python process.

A bridge thread stands in for the script inside the site (it takes tasks from the
ScriptSession and answers them), so gates, DIFF, metrics and failures work as in-process;
between the bridge and the process, models travel over a loopback socket in the wire format.
A script that crashes or exits early fails its task with its exit code and stderr tail.
"""

from __future__ import annotations

import collections
import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from runtime.client import channel
from runtime.client.session import ScriptSession


class ExternalScript:
    """Runs `python script args` for one site and bridges it to `session`."""

    def __init__(self, session: ScriptSession, script: Path, argv: list[str], custom_dir: Path | None,
                 workspace: Path, log_write: Any, connect_timeout: float = 120.0) -> None:
        self.session = session
        self.script, self.argv = script, argv
        self.custom_dir, self.workspace = custom_dir, workspace
        self.log_write = log_write or (lambda text: None)
        self.connect_timeout = connect_timeout
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=20)
        self.proc: subprocess.Popen | None = None
        self.finished = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._run, name=f"{self.session.site}-bridge", daemon=True).start()

    def _spawn(self, port: int, token: str) -> subprocess.Popen:
        env = dict(os.environ)
        paths = [str(p) for p in (self.custom_dir, self.script.parent) if p is not None]
        env["PYTHONPATH"] = os.pathsep.join(paths + [env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        env[channel.ENV_CHANNEL] = f"127.0.0.1:{port}"
        env[channel.ENV_TOKEN] = token
        # Sites sharing a host share its cores: without a cap, N processes each start an
        # OpenMP/MKL pool as wide as the machine and spin against each other.
        share = max(1, (os.cpu_count() or 1) // max(1, int(self.session.info.get("host_sites", 1))))
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env.setdefault(var, str(share))
        info = {"site_name": self.session.site, "job_id": self.session.job_id, **self.session.info}
        env[channel.ENV_INFO] = json.dumps(info)
        self.workspace.mkdir(parents=True, exist_ok=True)
        proc = subprocess.Popen(
            [sys.executable, str(self.script), *self.argv], cwd=self.workspace, env=env,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        for stream, tail in ((proc.stdout, None), (proc.stderr, self.stderr_tail)):
            threading.Thread(target=self._pump_output, args=(stream, tail), daemon=True).start()
        return proc

    def _pump_output(self, stream, tail) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode(errors="replace")
            self.log_write(line)
            if tail is not None:
                tail.append(line.rstrip("\n"))

    def _exit_error(self) -> str:
        code = self.proc.wait(timeout=10) if self.proc else None
        tail = "\n".join(self.stderr_tail) or "(no stderr)"
        return f"{self.script.name} (pid {self.proc.pid if self.proc else '?'}) exited with code {code}; " \
               f"stderr tail:\n{tail}"

    def _run(self) -> None:
        error: str | None = None
        conn: socket.socket | None = None
        try:
            conn = self._connect()
            while self.session.is_running():
                model = self.session.receive()
                if model is None:
                    break
                channel.send_frame(conn, channel.TASK, {"task_name": self.session.task_name}, model)
                while True:
                    kind, header, result = channel.recv_frame(conn)
                    if kind == channel.METRICS:
                        for rec in header.get("records", []):
                            self.session.record_metric(rec)
                    elif kind == channel.RESULT and result is not None:
                        self.session.send(result)
                        break
                    else:
                        raise ConnectionError(f"unexpected frame {kind!r} from the script")
            try:
                channel.send_frame(conn, channel.END, {})
            except OSError:
                pass
            code = self.proc.wait(timeout=30) if self.proc else 0
            if code not in (0, None):
                error = self._exit_error()
        except (ConnectionError, OSError, TimeoutError, subprocess.TimeoutExpired) as e:
            if self.proc is not None:
                try:  # the channel closing usually means the process is on its way out
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
            error = self._exit_error() if self.proc and self.proc.poll() is not None else f"{e}"
        finally:
            if conn is not None:
                conn.close()
            if self.proc is not None and self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.session.script_finished(error)
            self.finished.set()

    def kill_after(self, grace: float) -> None:
        """The job ended: if the script process has not exited `grace` seconds from now, kill
        it (its task is over; what it computes now has nowhere to go)."""
        def reap() -> None:
            if not self.finished.wait(grace) and self.proc is not None and self.proc.poll() is None:
                self.proc.kill()

        threading.Thread(target=reap, name="script-reaper", daemon=True).start()

    def _connect(self) -> socket.socket:
        token = secrets.token_hex(16)
        with socket.create_server(("127.0.0.1", 0)) as server:
            server.settimeout(0.2)
            self.proc = self._spawn(server.getsockname()[1], token)
            deadline = time.monotonic() + self.connect_timeout
            while True:
                if self.proc.poll() is not None:
                    raise ConnectionError("the script exited before connecting")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the script did not connect within {self.connect_timeout:g}s")
                try:
                    conn, _ = server.accept()
                except socket.timeout:
                    continue
                conn.settimeout(None)
                kind, header, _ = channel.recv_frame(conn)
                if kind == channel.HELLO and header.get("token") == token:
                    return conn
                conn.close()  # not our script: keep waiting for it
