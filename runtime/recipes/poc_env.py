"""PocEnv and ProdEnv: a recipe's job on a running federation through its admin port (a POC on
this machine, any server's address, or a provisioned federation as an admin of its startup kit);
PocRun answers for it."""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runtime import paths
from runtime.admin import FINAL_STATUSES, Denied, Refused, ServerUnreachable, Session
from runtime.jobs.errors import ArgError, check_positive_int
from runtime.recipes.envs import Env, EnvError, Run

if TYPE_CHECKING:
    from runtime.recipes.base import Recipe


_COUNTED = ("CONNECTED", "STALE")  # site statuses the scheduler counts


def read_poc_manifest(poc_workspace: str | Path) -> dict[str, Any]:
    """The POC workspace's manifest (runtime.federation.poc); EnvError, saying how to make one,
    if it is missing or bad."""
    from runtime.federation import poc

    root = Path(poc_workspace).absolute()
    make = f"`flshell poc prepare -n N -w {root}` then `flshell poc start -w {root}`"
    if not root.is_dir():
        raise EnvError(f"no POC workspace at {root}: make one with {make}")
    try:
        manifest = poc.manifest(root)
    except poc.PocError as e:
        raise EnvError(f"{e}; then `flshell poc start -w {root}`") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("admin_address"), str):
        raise EnvError(f"{root / poc.MANIFEST} has no \"admin_address\"; `flshell poc prepare "
                       f"--force -w {root}` makes a fresh one")
    return manifest


def _open_session(address: str, startup_kit: str | Path | None, timeout: float) -> Session:
    """A Session on `address`: as the admin of `startup_kit` (mutual TLS) when given."""
    if startup_kit is None:
        return Session(address, timeout=timeout)
    from provisioning import KitError

    try:
        return Session.from_startup_kit(startup_kit, address=address, timeout=timeout)
    except KitError as e:
        raise EnvError(f"the admin startup kit cannot be used: {e}") from None


class PocRun(Run):
    """A job submitted to a server. When it has ended, `wait()` / `get_result()` download the
    job's server folder (result/, rounds/, metrics.jsonl, logs/) to `<workspace_root>/<job id>/`
    (`self.workspace`), then answer from there. `job` is the last record the server gave."""

    def __init__(self, address: str, job_id: str, workspace_root: str | Path | None = None,
                 session_timeout: float = 30.0, poll: float = 2.0,
                 startup_kit: str | Path | None = None) -> None:
        """`startup_kit`: an admin startup kit; the run's sessions use it (mutual TLS)."""
        self.address = address
        self.startup_kit = startup_kit
        self.job_id = job_id
        self.workspace_root = Path(workspace_root or paths.default("poc_runs"))
        self.session_timeout = session_timeout
        self.poll = poll
        self.workspace: Path | None = None
        self.job: dict[str, Any] | None = None
        self._session: Session | None = None
        self._lock = threading.RLock()

    def session(self) -> Session:
        """The admin session this run uses (opened on first use, closed once downloaded)."""
        with self._lock:
            if self._session is None:
                self._session = _open_session(self.address, self.startup_kit,
                                              self.session_timeout)
            return self._session

    def close(self) -> None:
        with self._lock:
            if self._session is not None:
                self._session.close()
                self._session = None

    def __enter__(self) -> "PocRun":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def done(self) -> bool:
        return self.job is not None and self.job.get("status") in FINAL_STATUSES

    def get_job_id(self) -> str:
        return self.job_id

    def get_job(self) -> dict[str, Any]:
        """The server's record of the job (status, reason, rounds with metrics, sites...)."""
        if not self.done:
            self.job = self.session().get_job(self.job_id)
        assert self.job is not None
        return self.job

    def get_status(self) -> str:
        return str(self.get_job()["status"])

    def get_reason(self) -> str | None:
        """Why the job is WAITING, or why it FAILED / was ABORTED."""
        return self.get_job().get("reason")

    def wait(self, timeout: float | None = None) -> str:
        """Block until the job has ended (at most `timeout` seconds), download it, and return
        its status (still SUBMITTED / WAITING / RUNNING if `timeout` ran out)."""
        if not self.done:
            try:
                self.job = self.session().wait_for_job(self.job_id, timeout=timeout, poll=self.poll)
            except TimeoutError:
                return self.get_status()
        self._download()
        return str(self.job["status"])

    def get_result(self, timeout: float | None = None) -> str | None:
        if self.wait(timeout) not in FINAL_STATUSES:
            return None
        assert self.workspace is not None
        return str(self.workspace / "result")

    def _download(self) -> None:
        with self._lock:
            if self.workspace is not None:
                return
            target = paths.ensure(self.workspace_root) / self.job_id
            if not (target / "result").is_dir():  # a previous PocRun may have fetched it already
                target = self.session().download_job(self.job_id, self.workspace_root)
            self.workspace = target
            self.close()  # everything from here on is answered from the download

    def abort(self) -> None:
        if self.done:
            return
        try:
            self.job = self.session().abort_job(self.job_id)
        except Refused:  # it ended meanwhile
            self.job = self.session().get_job(self.job_id)

    def get_metrics(self) -> dict[str, Any]:
        rounds = self.get_job().get("rounds") or []
        return dict(rounds[-1].get("metrics") or {}) if rounds else {}

    def get_log(self, site: str | None = None) -> str:
        if self.workspace is not None:
            path = self.workspace / "logs" / ("server.log" if site is None else f"{site}.log")
            if path.is_file():
                return path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(self.session().tail_log(self.job_id, site=site, lines=-1)) + "\n"


class PocEnv(Env):
    """Run on a POC federation that is already running on this machine, or on any flshell
    server whose admin port answers without TLS.

    `PocEnv()` attaches to the POC in `$FLSHELL_HOME/poc` (see runtime.paths; its `poc.json` names the server's admin
    address and sites); make and start one first with `flshell poc prepare -n 2` and
    `flshell poc start`, or pass `start=True` to have PocEnv start it as `flshell poc start`
    does (its processes then keep running after this program, until `flshell poc stop`). `PocEnv(admin_address="HOST:PORT")`
    attaches to that server instead.

    Before submitting, PocEnv checks that the server answers and that enough sites are
    connected (CONNECTED or STALE): `num_clients` if given, and the recipe's `min_clients`
    in any case (the server would otherwise leave the job WAITING for sites).

    Args:
        poc_workspace: the POC workspace folder (ignored when `admin_address` is given).
        num_clients: fail before submitting unless at least this many sites are connected.
        admin_address: "HOST:PORT" of a server's admin port, instead of a POC workspace.
        start: start the POC first, as `flshell poc start -w POC_WORKSPACE` does (idempotent:
            starts only what is not running, waits until the sites are connected).
        workspace_root: finished runs are downloaded to `<workspace_root>/<job id>/`.
        wait: return from execute() only when the job has ended and is downloaded (default).
        timeout: with `wait`, give up waiting after this many seconds (the Run is returned
            with the job still running; call `run.wait()` again later).
        connect_timeout: seconds to wait for the server's first answer.
    """

    def __init__(
        self,
        poc_workspace: str | Path | None = None,
        num_clients: int | None = None,
        admin_address: str | None = None,
        start: bool = False,
        workspace_root: str | Path | None = None,
        wait: bool = True,
        timeout: float | None = None,
        connect_timeout: float = 10.0,
    ) -> None:
        if num_clients is not None:
            check_positive_int("num_clients", num_clients)
        if admin_address is not None and (not isinstance(admin_address, str) or ":" not in admin_address):
            raise ArgError("admin_address", '"HOST:PORT"', admin_address)
        if start and admin_address is not None:
            raise ArgError("start", "False with admin_address (start=True starts a POC workspace)", start)
        self.poc_workspace = Path(poc_workspace or paths.default("poc")).absolute()
        self.num_clients = num_clients
        self.admin_address = admin_address
        self.start = start
        self.workspace_root = Path(workspace_root or paths.default("poc_runs"))
        self.wait = wait
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.startup_kit: str | None = None  # a secure POC's admin kit (set by connect())

    # ---- finding the server --------------------------------------------------------------------

    def _start_poc(self) -> None:
        from runtime.federation import poc

        try:
            poc.start(self.poc_workspace, timeout=120)
        except poc.PocError as e:
            raise EnvError(f"`flshell poc start -w {self.poc_workspace}` failed: {e}") from None

    def connect(self) -> tuple[str, list[str] | None]:
        """The admin address to use and the POC's site names (None without a manifest);
        EnvError, saying what to run, when there is no POC or its server does not answer."""
        if self.admin_address is not None:
            return self.admin_address, None
        manifest = read_poc_manifest(self.poc_workspace)
        if self.start:
            self._start_poc()
        if manifest.get("secure") and isinstance(manifest.get("admin_kit"), str):
            self.startup_kit = manifest["admin_kit"]  # mutual TLS as the POC's admin
        sites = manifest.get("sites")
        return manifest["admin_address"], [str(s) for s in sites] if isinstance(sites, list) else None

    def _check_sites(self, session: Session, recipe: "Recipe", poc_sites: list[str] | None) -> None:
        where = (f"the POC in {self.poc_workspace}" if self.admin_address is None
                 else f"the server at {session.address}")
        try:
            sites = session.list_sites()
        except ServerUnreachable:
            if self.admin_address is not None:
                raise EnvError(f"no flshell server answers at {session.address}: is it running, and is "
                               "that its admin port?") from None
            raise EnvError(f"the POC server in {self.poc_workspace} does not answer at {session.address}: "
                           f"start it with `flshell poc start -w {self.poc_workspace}` (or "
                           "PocEnv(start=True))") from None
        counted = sorted(s["name"] for s in sites if s.get("status") in _COUNTED)
        need = max(self.num_clients or 0, recipe.min_clients)
        if len(counted) >= need:
            return
        why = (f"num_clients={self.num_clients}" if need == self.num_clients
               else f"recipe {recipe.name!r} has min_clients={recipe.min_clients}")
        have = ", ".join(counted) or "none"
        if poc_sites is not None and len(poc_sites) < need:
            hint = (f"this POC has only {len(poc_sites)} sites: make a bigger one with `flshell poc stop "
                    f"-w {self.poc_workspace}`, `flshell poc prepare -n {need} --force -w "
                    f"{self.poc_workspace}`, `flshell poc start -w {self.poc_workspace}`")
        elif poc_sites is not None:
            hint = f"start the missing sites with `flshell poc start -w {self.poc_workspace}`"
        else:
            hint = "start more sites, or ask for fewer"
        raise EnvError(f"{why} needs {need} connected sites, but {where} has {len(counted)} "
                       f"({have}); {hint}")

    # ---- running ---------------------------------------------------------------------------------

    def deploy(self, recipe: "Recipe") -> Run:
        address, poc_sites = self.connect()
        with _open_session(address, self.startup_kit, self.connect_timeout) as session:
            self._check_sites(session, recipe, poc_sites)
            session.timeout = 30.0
            with tempfile.TemporaryDirectory(prefix="flshell-recipe-") as tmp:
                job_dir = recipe.export(Path(tmp) / recipe.name)
                try:
                    job_id = session.submit_job(job_dir)
                except ServerUnreachable as e:
                    raise EnvError(f"submitting {recipe.name!r} failed: {e}") from None
                except Denied as e:
                    raise EnvError(f"submitting {recipe.name!r} was refused: {e}") from None
        run = PocRun(address, job_id, self.workspace_root, startup_kit=self.startup_kit)
        if self.wait:
            run.wait(self.timeout)
        return run



# ---- a provisioned federation, through an admin's startup kit -------------------------------

def find_admin_kit(location: str | Path, username: str | None = None) -> Path:
    """The admin kit folder: `location` itself (prod/admin@org.com), or, with `username`,
    `location/<username>` (prod/); EnvError saying what is there otherwise."""
    root = Path(location).expanduser().absolute()
    candidates = [root]
    if username:
        candidates.insert(0, root / username)
    for c in candidates:
        if (c / "startup" / "fed_admin.json").is_file():
            return c
    if root.name == "startup" and (root / "fed_admin.json").is_file():
        return root.parent
    kits = sorted(q.parent.parent.name for q in root.glob("*/startup/fed_admin.json"))
    hint = f"; admin kits there: {', '.join(kits)} (pass username=...)" if kits else ""
    raise EnvError(f"no admin startup kit at {root}"
                   + (f" or {root / username}" if username else "")
                   + f" (an admin kit holds startup/fed_admin.json; make kits with "
                     f"`flshell provision project.yml`){hint}")


class ProdEnv(PocEnv):
    """Run on a provisioned federation (`flshell provision`), submitting as the admin of a
    startup kit: the session runs mutual TLS with the kit's certificate, to the server its
    fed_admin.json names, and the server's authorization policy applies to that admin (a
    `member` cannot submit: EnvError with the server's reason). Returns the same Run as PocEnv.

    Args:
        startup_kit_location: the admin's kit folder (prod/admin@org.com), or the folder of
            kits (prod/) with `username`.
        username: the admin's name (e-mail); if given, the kit must be that admin's.
        num_clients, workspace_root, wait, timeout, connect_timeout: as PocEnv.
        admin_address: "HOST:PORT" instead of the kit's fed_admin.json "server".
    """

    def __init__(
        self,
        startup_kit_location: str | Path,
        username: str | None = None,
        num_clients: int | None = None,
        workspace_root: str | Path | None = None,
        wait: bool = True,
        timeout: float | None = None,
        connect_timeout: float = 10.0,
        admin_address: str | None = None,
    ) -> None:
        from provisioning import KitError, load_kit

        kit_dir = find_admin_kit(startup_kit_location, username)
        try:
            kit = load_kit(kit_dir)
        except KitError as e:
            raise EnvError(f"the admin startup kit cannot be used: {e}") from None
        if kit.type != "admin":
            raise EnvError(f"{kit_dir} is a {kit.type} kit, not an admin's")
        if username is not None and kit.name != username:
            raise EnvError(f"{kit_dir} is the kit of {kit.name}, not of {username}")
        address = admin_address or kit.config.get("server")
        if not isinstance(address, str) or ":" not in address:
            raise EnvError(f"{kit.startup / 'fed_admin.json'} names no server HOST:PORT")
        super().__init__(num_clients=num_clients, admin_address=address,
                         workspace_root=workspace_root or paths.default("prod_runs"), wait=wait, timeout=timeout,
                         connect_timeout=connect_timeout)
        self.kit = kit
        self.username = kit.name
        self.startup_kit = str(kit.root)

    def connect(self) -> tuple[str, list[str] | None]:
        assert self.admin_address is not None
        return self.admin_address, None
