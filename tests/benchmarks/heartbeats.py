"""Server under N heartbeating sites: heartbeats/s, server CPU and RSS, heartbeat latency.

For each N a real server process (`python -m flshell.server_cmd --insecure`) is started; N
lightweight sites (a site is just a name) register and then heartbeat every INTERVAL seconds
(random phase) from a few worker processes, one gRPC channel per worker shared by its sites.
After a warm-up, for --seconds the server's CPU % and the latency of every heartbeat are
measured; at the end the admin port must list all N sites CONNECTED.
Run: python tests/benchmarks/heartbeats.py [--sites 100,500,1000] [--seconds 10] [--interval 1.0]
"""

from __future__ import annotations

import argparse
import heapq
import json
import multiprocessing as mp
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# What a site's heartbeat carries (runtime/client/agent.py sends heartbeat_info() + host + gpus),
# with fixed numbers: the sites must cost the workers as little as possible.
HOST = {"cpu_percent": 12.5, "cpu_count": 8, "mem_used": 6_123_456_789, "mem_total": 16_777_216_000,
        "load_avg": [0.51, 0.42, 0.40]}
INFO = {"jobs": [], "host": HOST, "gpus": []}


# ---- a worker process: some of the sites -------------------------------------------------------

def worker_main(conn, address: str, names: list[str], interval: float, threads: int, seed: int) -> None:
    """Registers `names`, then heartbeats each every `interval` s until told to exit.

    Control (over `conn`): "start" opens the measuring window, "stop" closes it and sends back
    the calls that started inside it, "exit" (or the parent going away) ends the worker."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us; Ctrl-C is its business
    from runtime.transport.base import TransportError
    from runtime.transport.grpc_client import GrpcSiteTransport

    transport = GrpcSiteTransport(address)
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="hb")
    reg_errors: list[str] = []

    def register(name: str) -> None:
        try:
            transport.register(name, {})
        except TransportError as e:
            reg_errors.append(f"{name}: {e}")

    t0 = time.perf_counter()
    list(pool.map(register, names))
    conn.send(("ready", time.perf_counter() - t0, reg_errors[:5], len(reg_errors)))

    cond = threading.Condition()
    due: list[tuple[float, str]] = []  # heap of (when, site)
    stop = threading.Event()
    window = {"start": float("inf"), "end": float("inf")}
    lat: list[float] = []  # seconds, calls that started in the window and succeeded
    lag: list[float] = []  # seconds late the worker started those calls (its own bottleneck)
    errors: list[str] = []
    pending = [0]  # calls started in the window, not yet back
    pending_lock = threading.Lock()

    def beat(name: str, when: float) -> None:
        start = time.perf_counter()
        inside = window["start"] <= start < window["end"]
        if inside:
            with pending_lock:
                pending[0] += 1
        ok, err = True, None
        try:
            transport.heartbeat(name, INFO)
        except Exception as e:  # noqa: BLE001 - counted and reported, the site carries on
            ok, err = False, f"{name}: {e}"
        end = time.perf_counter()
        if inside:
            if ok:
                lat.append(end - start)
                lag.append(start - when)
            else:
                errors.append(err)
            with pending_lock:
                pending[0] -= 1
        # The next beat one interval after this one was due; never two at once for a site, and a
        # site that fell more than an interval behind skips the beats it missed (as agents do).
        with cond:
            heapq.heappush(due, (max(when + interval, end), name))
            cond.notify()

    rng = random.Random(seed)
    now = time.perf_counter()
    with cond:
        for name in names:
            heapq.heappush(due, (now + rng.uniform(0, interval), name))

    def schedule() -> None:
        while not stop.is_set():
            with cond:
                if not due:
                    cond.wait(0.1)
                    continue
                wait = due[0][0] - time.perf_counter()
                if wait > 0:
                    cond.wait(min(wait, 0.1))
                    continue
                when, name = heapq.heappop(due)
            pool.submit(beat, name, when)

    scheduler = threading.Thread(target=schedule, name="scheduler", daemon=True)
    scheduler.start()
    try:
        while True:
            try:
                cmd = conn.recv()
            except (EOFError, OSError):
                break
            if cmd == "start":
                window["start"] = time.perf_counter()
            elif cmd == "stop":
                window["end"] = time.perf_counter()
                deadline = time.monotonic() + 10.0  # calls begun in the window come back first
                while pending[0] > 0 and time.monotonic() < deadline:
                    time.sleep(0.01)
                conn.send(("result", {"seconds": window["end"] - window["start"], "lat": list(lat),
                                      "lag": list(lag), "errors": len(errors),
                                      "error_sample": errors[:3], "unfinished": pending[0]}))
            elif cmd == "exit":
                break
    finally:
        stop.set()
        pool.shutdown(wait=False, cancel_futures=True)
        transport.close()  # cancels calls still in flight


# ---- the parent: one server, the workers, the measurements ---------------------------------------

def pct(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (NaN when empty)."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, int(round(q / 100 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


def peak_rss_mib(pid: int) -> float | None:
    """The process's high-water RSS (VmHWM) so far; None where /proc does not say."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


class Run:
    """One N: a server process, its workspace and the site workers; `close()` ends them all."""

    def __init__(self, n: int, args: argparse.Namespace) -> None:
        self.n, self.args = n, args
        self.ws = Path(tempfile.mkdtemp(prefix="flshell-hb-bench-"))
        self.server: subprocess.Popen | None = None
        self.workers: list[tuple[mp.Process, object]] = []

    def start_server(self) -> dict:
        out = open(self.ws / "server.out", "wb")
        cmd = [sys.executable, "-m", "flshell.server_cmd", "--workspace", str(self.ws / "server"),
               "--insecure", "--heartbeat-interval", str(self.args.interval)]
        # Own session: a Ctrl-C at the terminal reaches this script only, which stops the server.
        self.server = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                       start_new_session=True)
        out.close()
        state_file = self.ws / "server" / "server.json"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.server.poll() is not None:
                raise RuntimeError(f"the server exited ({self.server.returncode}):\n{self.server_output()}")
            try:
                state = json.loads(state_file.read_text())
                if state.get("pid") and state.get("fl_address") and state.get("admin_address"):
                    return state
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        raise RuntimeError(f"the server was not ready within 60 s:\n{self.server_output()}")

    def server_output(self, lines: int = 30) -> str:
        try:
            text = (self.ws / "server.out").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def start_workers(self, address: str, names: list[str]) -> float:
        """Start the workers; returns once every site is registered (the slowest worker's time)."""
        ctx = mp.get_context("spawn")
        k = max(1, min(self.args.workers, len(names)))
        for i in range(k):
            parent, child = ctx.Pipe()
            p = ctx.Process(target=worker_main, name=f"hb-worker-{i}", daemon=True,
                            args=(child, address, names[i::k], self.args.interval,
                                  self.args.threads, 1000 * self.n + i))
            p.start()
            child.close()
            self.workers.append((p, parent))
        slowest = 0.0
        for p, conn in self.workers:
            msg = self.recv(p, conn, 120)
            _, seconds, sample, count = msg
            if count:
                raise RuntimeError(f"{count} registrations failed, e.g. {sample}")
            slowest = max(slowest, seconds)
        return slowest

    @staticmethod
    def recv(p: mp.Process, conn, timeout: float):
        deadline = time.monotonic() + timeout
        while not conn.poll(0.1):
            if not p.is_alive():
                raise RuntimeError(f"{p.name} died (exit code {p.exitcode})")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{p.name} did not answer within {timeout:g} s")
        try:
            return conn.recv()
        except EOFError:
            p.join(1)
            raise RuntimeError(f"{p.name} ended early (exit code {p.exitcode})") from None

    def broadcast(self, cmd: str) -> None:
        for _, conn in self.workers:
            conn.send(cmd)

    def close(self) -> None:
        for p, conn in self.workers:
            try:
                conn.send("exit")
            except (OSError, ValueError):
                pass
        for p, conn in self.workers:
            p.join(5)
            if p.is_alive():
                p.terminate()
                p.join(3)
            if p.is_alive():
                p.kill()
                p.join()
            conn.close()
        self.workers = []
        if self.server is not None and self.server.poll() is None:
            self.server.send_signal(signal.SIGTERM)
            try:
                self.server.wait(20)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()
        shutil.rmtree(self.ws, ignore_errors=True)


def measure(n: int, args: argparse.Namespace) -> dict:
    import psutil

    from runtime.admin import Session

    run = Run(n, args)
    try:
        state = run.start_server()
        server = psutil.Process(state["pid"])
        server.cpu_percent(None)
        time.sleep(1.0)
        idle_cpu = server.cpu_percent(None)  # before any site: the server's own background work
        names = [f"site-{i:05d}" for i in range(1, n + 1)]
        t0 = time.monotonic()
        register_s = run.start_workers(state["fl_address"], names)
        spawn_s = time.monotonic() - t0
        time.sleep(args.warmup)

        procs = [server] + [psutil.Process(p.pid) for p, _ in run.workers]
        for p in procs:
            p.cpu_percent(None)  # starts each process's window
        cpu0 = server.cpu_times()
        run.broadcast("start")
        rss_max = 0
        end = time.monotonic() + args.seconds
        while (left := end - time.monotonic()) > 0:
            rss_max = max(rss_max, server.memory_info().rss)
            time.sleep(min(0.25, left))
        run.broadcast("stop")
        server_cpu = server.cpu_percent(None)
        cpu1 = server.cpu_times()
        worker_cpu = sum(p.cpu_percent(None) for p in procs[1:])
        results = [run.recv(p, conn, 30)[1] for p, conn in run.workers]
        peak = peak_rss_mib(server.pid) or rss_max / 2**20

        # From the admin side, while the sites are still heartbeating.
        t1 = time.perf_counter()
        with Session(state["admin_address"]) as admin:
            sites = admin.list_sites()
        list_ms = (time.perf_counter() - t1) * 1000
        wanted = set(names)
        connected = sum(1 for s in sites if s.get("status") == "CONNECTED" and s.get("name") in wanted)
        others = {}
        for s in sites:
            if s.get("status") != "CONNECTED":
                others[s.get("status")] = others.get(s.get("status"), 0) + 1
    finally:
        run.close()

    lat = sorted(x for r in results for x in r["lat"])
    lag = sorted(x for r in results for x in r["lag"])
    rate = sum(len(r["lat"]) / r["seconds"] for r in results)
    server_cpu_s = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
    return {
        "n": n, "rate": rate, "expected": n / args.interval, "server_cpu": server_cpu,
        "cpu_us_per_hb": server_cpu_s / max(1, len(lat)) * 1e6, "peak_rss": peak,
        "p50": pct(lat, 50) * 1000, "p99": pct(lat, 99) * 1000, "max": (lat[-1] if lat else float("nan")) * 1000,
        "connected": connected, "others": others,
        "errors": sum(r["errors"] for r in results), "unfinished": sum(r["unfinished"] for r in results),
        "error_sample": [e for r in results for e in r["error_sample"]][:3],
        "register_s": register_s, "spawn_s": spawn_s, "worker_cpu": worker_cpu,
        "lag_p99": pct(lag, 99) * 1000, "idle_cpu": idle_cpu, "list_ms": list_ms, "samples": len(lat),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sites", default="100,500,1000", help="N values, comma-separated")
    ap.add_argument("--seconds", type=float, default=10.0, help="measuring window per N")
    ap.add_argument("--interval", type=float, default=1.0, help="heartbeat interval, seconds")
    ap.add_argument("--warmup", type=float, help="seconds after registration before measuring "
                                                 "(default: 2 intervals, at least 2 s)")
    ap.add_argument("--workers", type=int, default=4, help="site worker processes")
    ap.add_argument("--threads", type=int, default=32, help="call threads per worker")
    args = ap.parse_args()
    if args.warmup is None:
        args.warmup = max(2.0, 2 * args.interval)
    sizes = [int(x) for x in args.sites.split(",")]

    def on_term(signum, _frame):
        raise KeyboardInterrupt  # clean up as for Ctrl-C

    signal.signal(signal.SIGTERM, on_term)

    import grpc
    import psutil

    load = " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    print("flshell server under N heartbeating sites: one `flshell server --insecure` process on loopback")
    print(f"machine: {platform.system()} {platform.machine()}, {os.cpu_count()} CPUs "
          f"({psutil.cpu_count(logical=False)} physical), {psutil.virtual_memory().total / 2**30:.0f} GiB, "
          f"Python {platform.python_version()}, grpcio {grpc.__version__}; load avg at start {load}")
    print(f"sites: register, then heartbeat every {args.interval:g} s (random phase, payload "
          f"{len(json.dumps(INFO))} B JSON) from {args.workers} worker processes x {args.threads} "
          f"threads, one gRPC channel per worker; warm-up {args.warmup:g} s, measured {args.seconds:g} s per N")
    print("server CPU % is of one core (psutil; >100 = more than one core); CPU us/hb = server CPU "
          "time in the window / heartbeats; peak RSS = VmHWM")
    print()
    head = (f"{'N':>6} {'hb/s':>8} {'expected':>9} {'srv CPU %':>10} {'CPU us/hb':>10} "
            f"{'peak RSS MiB':>13} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'CONNECTED':>10} {'errors':>7}")
    print(head, flush=True)
    rows, failed = [], False
    try:
        for n in sizes:
            try:
                r = measure(n, args)
            except RuntimeError as e:
                print(f"{n:>6}  failed: {e}", flush=True)
                failed = True
                continue
            rows.append(r)
            bad = r["connected"] != n or r["errors"] or r["unfinished"]
            failed = failed or bool(bad)
            print(f"{n:>6} {r['rate']:>8.1f} {r['expected']:>9.1f} {r['server_cpu']:>10.1f} "
                  f"{r['cpu_us_per_hb']:>10.0f} {r['peak_rss']:>13.0f} {r['p50']:>7.2f} {r['p99']:>7.2f} "
                  f"{r['max']:>7.1f} {str(r['connected']) + '/' + str(n):>10} "
                  f"{r['errors'] + r['unfinished']:>7}", flush=True)
            if r["others"]:
                print(f"        not CONNECTED: {r['others']}")
            if r["error_sample"]:
                print(f"        errors, e.g.: {r['error_sample']}")
    except KeyboardInterrupt:
        print("interrupted; every process stopped", file=sys.stderr)
        return 130
    if rows:
        print()
        print("the harness (to check the sites were not the bottleneck):")
        print(f"{'N':>6} {'register all s':>15} {'workers up s':>13} {'workers CPU %':>14} "
              f"{'call start lag p99 ms':>22} {'srv idle CPU %':>15} {'list_sites ms':>14} {'samples':>8}")
        for r in rows:
            print(f"{r['n']:>6} {r['register_s']:>15.2f} {r['spawn_s']:>13.2f} {r['worker_cpu']:>14.1f} "
                  f"{r['lag_p99']:>22.2f} {r['idle_cpu']:>15.1f} {r['list_ms']:>14.1f} {r['samples']:>8}")
        print("call start lag: how late the workers started a heartbeat after it was due; workers CPU % "
              "is all worker processes together")
        late = [r["n"] for r in rows if r["lag_p99"] > 100 * args.interval or r["rate"] < 0.98 * r["expected"]]
        if late:
            print(f"note: at N = {', '.join(map(str, late))} the sites fell behind (lag p99 over a tenth "
                  f"of the interval, or under 98% of the expected rate): this machine is short of CPU for "
                  f"server and sites together, so those latencies include the harness's own queueing")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
