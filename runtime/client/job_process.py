"""One job of a site in a process of its own: `python -m runtime.client.job_process ...`.

The site's agent (`runtime.client.process_agent.ProcessSiteAgent`) registered the site and
unpacked the job's app; it starts this process per job. Here the job is built and served with
the in-process `SiteAgent` machinery, polling that job's own inbox on the server, until the job
ends. This process never registers (that would overwrite the site's info on the server).

Its log (job logger, the script's prints) goes to `<site ws>/jobs/<job>/log.txt` and is shipped
to the server in batches. A control socket from the agent (`--control-fd`) carries one word at
the end ("ended": the job ended and this process said so; "reported": it could not start and
reported that itself); when the agent dies the socket closes and this process (and anything it
started in its process group) is killed at once: a job process never outlives its site agent.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import signal
import socket
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from runtime.client.agent import SiteAgent
from runtime.client.backoff import Backoff
from runtime.client.sitelog import LogSink, site_logger
from runtime.jobs import App, JobError, load_job
from runtime.transport.base import JobEnd, JobStart, TaskAssignment, TaskResult, TransportError
from runtime.transport.grpc_client import GrpcSiteTransport

ENDED = b"ended\n"  # the job ended here: nothing for the agent to report
REPORTED = b"reported\n"  # the job could not start here, and this process told the server
SHIP_INTERVAL = 0.5  # seconds between log batches shipped to the server


@dataclass(frozen=True)
class TlsFiles:
    """A site's certificates for mutual TLS (from `flshell provision`); None means insecure."""

    root_ca: Path
    cert: Path
    key: Path


def open_transport(address: str, tls: TlsFiles | None = None,
                   cls: type[GrpcSiteTransport] = GrpcSiteTransport) -> GrpcSiteTransport:
    """The site's connection to the server's site port (agent and job processes alike)."""
    credentials = None
    if tls is not None:
        import grpc

        credentials = grpc.ssl_channel_credentials(
            root_certificates=tls.root_ca.read_bytes(), private_key=tls.key.read_bytes(),
            certificate_chain=tls.cert.read_bytes())
    return cls(address, credentials)


class JobTransport(GrpcSiteTransport):
    """A job process's transport: ships the log before each result, so a round's log lines
    reach the server before the round (and maybe the job) is over."""

    before_result: Callable[[], None] | None = None

    def submit_result(self, result: TaskResult) -> None:
        if self.before_result is not None:
            self.before_result()
        super().submit_result(result)


def load_app(folder: Path, app_name: str) -> App:
    """The app unpacked at `folder`: an app of the job folder above it, or a bare app folder."""
    folder = Path(folder).resolve()
    if (folder.parent / "meta.json").is_file():
        app = load_job(folder.parent).apps.get(app_name)
        if app is not None and app.root == folder:
            return app
    app = load_job(folder).apps.get(app_name)
    if app is None:
        raise JobError(None, None, f"{folder} holds no app named {app_name!r}")
    return app


class JobProcess:
    """Builds one job with a SiteAgent, serves its tasks from the job's inbox until it ends."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.site, self.job_id = args.site, args.job_id
        self.workspace = Path(args.workspace)
        self.job_dir = self.workspace / "jobs" / self.job_id
        self.log_path = self.job_dir / "log.txt"
        self.control = control_socket(args.control_fd)
        tls = TlsFiles(Path(args.tls_root), Path(args.tls_cert), Path(args.tls_key)) \
            if args.tls_root else None
        self.transport = open_transport(args.server, tls, JobTransport)
        self.sink = LogSink(SHIP_INTERVAL)  # the job's log goes to the server as it is written
        self.sink.ship(self.log_path, lambda text: self.transport.ship_log(self.site, self.job_id, text))
        info: dict[str, Any] = json.loads(args.info) if args.info else {}
        app_folder = Path(args.app_folder)
        self.agent = SiteAgent(self.site, self.transport, lambda msg: load_app(app_folder, msg.app_name),
                               self.workspace, self.sink, info=info, poll_timeout=args.poll_timeout)
        self.logger = site_logger(f"{self.site}.{self.job_id[:8]}.process",
                                  self.sink.writer(self.log_path))
        self.agent.logger = self.logger  # its warnings belong to this job's log
        self.transport.before_result = self.sink.flush
        self.end_status: str | None = None
        self.ended = threading.Event()  # the server ended the job
        self.stop = threading.Event()  # SIGTERM/SIGINT: leave now
        self._exiting = threading.Lock()

    def run(self) -> int:
        signal.signal(signal.SIGTERM, lambda *_: self.stop.set())
        signal.signal(signal.SIGINT, lambda *_: self.stop.set())
        if self.control is not None:
            threading.Thread(target=self._watch_agent, name="agent-watch", daemon=True).start()
        self.logger.info(f"job process (pid {os.getpid()}) for job {self.job_id} of {self.site}")
        self.agent._start_job(JobStart(self.job_id, self.args.job_name, self.args.app_name))
        if self.job_id not in self.agent.jobs:  # could not start; _start_job reported FAILED
            self._exit(0, REPORTED)
        threading.Thread(target=self._serve, name=f"{self.site}-job-poll", daemon=True).start()
        while not (self.ended.wait(0.2) or self.stop.is_set()):
            pass
        if self.ended.is_set():
            aborted = self.end_status != "COMPLETED"
            # a completed job's scripts return once is_running() turns False; an aborted or
            # failed one's may be deep in a task: the process ends them.
            self.agent.join_ended(self.args.abort_grace if aborted else self.args.end_grace)
            self._exit(0, ENDED)
        self.logger.warning(f"job process of {self.site} terminated before the job ended")
        self._exit(128 + signal.SIGTERM, b"")
        return 0  # not reached

    def _serve(self) -> None:
        backoff = Backoff()
        while not self.stop.is_set():
            try:
                msg = self.transport.poll(self.site, self.args.poll_timeout, job_id=self.job_id)
                backoff.reset()
            except TransportError as e:
                if self.stop.is_set():
                    return
                delay = backoff.delay()
                self.logger.warning(f"server unreachable ({e}); retrying in {delay:.1f}s")
                self.stop.wait(delay)
                continue
            if isinstance(msg, JobEnd) and msg.job_id == self.job_id:
                self.end_status = msg.status
                self.agent.handle(msg)  # stops the executors, reports FINISHED
                self.ended.set()
                return
            if isinstance(msg, TaskAssignment):
                self.agent.handle(msg)

    def _watch_agent(self) -> None:
        """The agent holds the other end of the control socket: EOF means it is gone."""
        assert self.control is not None
        try:
            while self.control.recv(64):
                pass
        except OSError:
            pass
        self.logger.error(f"the site agent of {self.site} is gone: ending job process {os.getpid()}")
        try:
            self.sink.flush_file_only(wait=0.2)
        finally:
            if os.getpgid(0) == os.getpid():  # leader of its own group (the agent made it so)
                os.killpg(os.getpid(), signal.SIGKILL)  # with anything the job started
            os._exit(128 + signal.SIGKILL)

    def _exit(self, code: int, word: bytes) -> None:
        """Flush and ship the log, tell the agent `word`, exit now (script threads included)."""
        with self._exiting:
            self.logger.info(f"job process of {self.site} exiting ({code})")
            try:
                self.sink.close()
            except Exception:  # noqa: BLE001 - the exit must not hang on the log
                pass
            if self.control is not None and word:
                try:
                    self.control.sendall(word)
                except OSError:
                    pass
            sys.stdout.flush()
            os._exit(code)


def control_socket(fd: int | None) -> socket.socket | None:
    """The inherited end of a socketpair to the parent (None without one); not passed on."""
    if fd is None:
        return None
    os.set_inheritable(fd, False)  # not to the scripts' own subprocesses
    return socket.socket(fileno=fd)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m runtime.client.job_process",
                                description="Run one job of a site (started by the site agent).")
    p.add_argument("--server", required=True, help="the server's site port, HOST:PORT")
    p.add_argument("--site", required=True)
    p.add_argument("--job-id", required=True)
    p.add_argument("--job-name", required=True)
    p.add_argument("--app-name", required=True)
    p.add_argument("--app-folder", required=True, help="the app folder, already unpacked")
    p.add_argument("--workspace", required=True, help="the site's workspace")
    p.add_argument("--info", help="the site's info as JSON (what scripts see)")
    p.add_argument("--poll-timeout", type=float, default=1.0)
    p.add_argument("--end-grace", type=float, default=5.0,
                   help="seconds the scripts of a completed job get to return")
    p.add_argument("--abort-grace", type=float, default=0.1,
                   help="seconds the scripts of an aborted or failed job get to return")
    p.add_argument("--control-fd", type=int, help="socket to the site agent (inherited)")
    p.add_argument("--tls-root", help="root CA (mutual TLS; insecure without)")
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    return p


def main(argv: list[str] | None = None) -> int:
    faulthandler.enable(all_threads=False)  # a crash leaves its stack on stderr for the agent
    return JobProcess(build_parser().parse_args(argv)).run()


if __name__ == "__main__":
    sys.exit(main())
