"""The admin authorization policy against a real mutual-TLS admin port (reliability plan S6, S10).

S6: every admin role x every admin command, on jobs of the caller's own and of another org,
table-driven: the expected verdict of each cell comes from the server kit's authorization.json
(provisioning.policy), the command -> rights mapping is written out here, and each attempt must
be in audit.log with its verdict. S10: a `member` certificate cannot become anyone else by any
request field.
"""

from __future__ import annotations

import collections
import json
import shutil
from pathlib import Path

import grpc
import pytest

from provisioning import load_kit, load_policy
from runtime.admin import AdminError, Denied, Session
from runtime.proto import admin_pb2
from runtime.transport.base import SiteCommand
from runtime.transport.grpc_client import GrpcSiteTransport
from tests.integration.conftest import run_flshell
from tests.integration.secure_fed import (ADMIN_SERVICE, ADMINS, HELLO, kit_credentials, make_prod,
                                          start_server)

WAIT = 60


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("authz")
    prod = make_prod(root)
    no_code = root / "jobs" / "no-code"  # a job that brings no code of its own (no custom/)
    shutil.copytree(HELLO, no_code, ignore=shutil.ignore_patterns("__pycache__"))
    (no_code / "app" / "custom").rename(no_code / "app" / "code")
    server = start_server(prod, root / "server")
    # site-1 (org-a) registers with its certificate and stays in the registry: a target for
    # operate (no agent: it never takes work)
    site = GrpcSiteTransport(server.fl_address, credentials=kit_credentials(prod / "site-1"))
    site.register("site-1", {})
    sessions = {who: Session.from_startup_kit(prod / name, address=server.admin_address, timeout=20)
                for who, name in ADMINS.items()}
    try:
        yield {"root": root, "prod": prod, "server": server, "sessions": sessions,
               "no_code": no_code,
               "policy": load_policy(load_kit(prod / "localhost").local / "authorization.json")}
    finally:
        for s in sessions.values():
            s.close()
        site.close()
        server.stop(0)


def _watch(s: Session) -> None:
    s.watch().close()


def _tail(s: Session, job: str) -> None:
    list(s.tail_log(job))


# command -> (rights it needs, what it acts on, how the session does it, its audit name).
# "job": a job submitted by an owner (lead_a of org-a, or lead_b of org-b); "collection": a
# listing, which an own_job / own_org condition lets through; "site-1": the org-a site;
# "server": the server itself (no org, so only "any" lets it through).
COMMANDS = {
    "submit_job (custom code)": (["submit_job", "byoc"], None,
                                 lambda s, c: s.submit_job(HELLO), "submit_job"),
    "submit_job (no code)": (["submit_job"], None,
                             lambda s, c: s.submit_job(c["no_code"]), "submit_job"),
    "list_jobs": (["view"], "collection", lambda s, c: s.list_jobs(), "list_jobs"),
    "list_sites": (["view"], "collection", lambda s, c: s.list_sites(), "list_sites"),
    "system_info": (["view"], "collection", lambda s, c: s.system_info(), "system_info"),
    "watch": (["view"], "collection", lambda s, c: _watch(s), "watch"),
    "get_job": (["view"], "job", lambda s, j: s.get_job(j), "get_job"),
    "abort_job": (["manage_job"], "job", lambda s, j: s.abort_job(j), "abort_job"),
    "delete_job": (["manage_job"], "job", lambda s, j: s.delete_job(j), "delete_job"),
    "clone_job": (["manage_job", "submit_job", "byoc"], "job", lambda s, j: s.clone_job(j),
                  "clone_job"),
    "download_job": (["download_job"], "job", lambda s, j: s.download_job(j, _dl(s, j)),
                     "download_job"),
    "tail_log": (["download_job"], "job", lambda s, j: _tail(s, j), "tail_log"),
    "restart client site-1": (["operate"], "site-1",
                              lambda s, c: s.operate("restart", "client", ["site-1"]),
                              "restart client"),
    "shutdown server": (["operate"], "server", lambda s, c: s.operate("shutdown", "server"),
                        "shutdown server"),
}
DL_ROOT: list[Path] = []


def _dl(s: Session, job: str) -> Path:
    return DL_ROOT[0] / s.user / job


def expected(policy, role: str, actor: str, actor_org: str, rights: list[str], target: str | None,
             owner: tuple[str, str] | None) -> bool:
    for right in rights:
        if target == "collection":
            ok = policy.condition(role, right) != "none"
        elif target == "site-1":
            ok, _ = policy.check(role, right, user=actor, user_org=actor_org, site_org="org-a")
        elif target == "server":
            ok = policy.condition(role, right) == "any"
        elif owner is not None and right not in ("submit_job", "byoc"):
            ok, _ = policy.check(role, right, user=actor, user_org=actor_org, job_owner=owner[0],
                                 job_owner_org=owner[1])
        else:  # what a submit creates is the actor's own
            ok, _ = policy.check(role, right, user=actor, user_org=actor_org)
        if not ok:
            return False
    return True


def test_s6_every_role_and_command_matches_the_policy_file_and_is_audited(setup, tmp_path):
    DL_ROOT[:] = [tmp_path]
    policy, sessions = setup["policy"], setup["sessions"]
    owners = {"lead_a": ("lead@org-a.com", "org-a"), "lead_b": ("lead@org-b.com", "org-b")}
    roles = {who: load_kit(setup["prod"] / name) for who, name in ADMINS.items()}
    rows, mismatches, attempts = [], [], []
    for who, kit in roles.items():
        s = sessions[who]
        for command, (rights, target, do, audit_name) in COMMANDS.items():
            cells = [(o, owners[o]) for o in owners] if target == "job" else [(None, None)]
            for owner_key, owner in cells:
                job = None
                arg: object = setup
                if target == "job":  # a fresh job for each cell: abort / delete change it
                    job = sessions[owner_key].submit_job(HELLO)
                    arg = job
                want = expected(policy, kit.role, kit.name, kit.org, rights, target, owner)
                try:
                    do(s, arg)
                    got = True
                except Denied as e:
                    got = False
                    assert f"{kit.role} cannot" in str(e), str(e)
                except AdminError:  # allowed, then refused for another reason (state, missing log)
                    got = True
                rows.append((kit.role, who, command, owner_key or "", want, got))
                attempts.append((kit.name, audit_name, job, "allowed" if got else "denied"))
                if want != got:
                    mismatches.append(rows[-1])
    table = "\n".join(f"{r[0]:<14}{r[1]:<14}{r[2]:<26}{r[3]:<8} policy={r[4]!s:<6} got={r[5]}"
                      for r in rows)
    print("\n" + table)
    assert not mismatches, "\n".join(map(str, mismatches))
    assert len(rows) == len(roles) * (len(COMMANDS) + 6)  # 6 job commands x 2 owners
    # every cell was tried: each verdict appears, and so does each condition's both sides
    assert {r[5] for r in rows if r[0] == "member"} == {True, False}
    assert ("lead", "lead_b", "abort_job", "lead_a", False, False) in rows
    assert ("org_admin", "org_admin", "abort_job", "lead_a", True, True) in rows
    assert ("org_admin", "org_admin", "abort_job", "lead_b", False, False) in rows
    assert all(r[5] for r in rows if r[0] == "project_admin")

    audit = [json.loads(line) for line in
             (setup["root"] / "server" / "audit.log").read_text().splitlines()]
    logged = collections.Counter((a["user"], a["command"], a["job"], a["verdict"]) for a in audit
                                 if a["command"] != "job_status")
    wanted = collections.Counter(attempts)
    missing = wanted - logged
    assert not missing, missing
    for a in audit:
        if a["command"] != "job_status":
            assert {"time", "user", "org", "role", "command", "job", "verdict", "reason"} <= set(a)
            assert a["role"] in ("project_admin", "org_admin", "lead", "member"), a


def test_s10_a_member_cannot_act_as_anyone_else_by_any_request_field(setup):
    prod, server = setup["prod"], setup["server"]
    member = kit_credentials(prod / ADMINS["member"])
    job = setup["sessions"]["lead_a"].submit_job(HELLO)
    forged = {"user": "admin@org-a.com", "role": "project_admin", "org": "org-a",
              "submitter": "admin@org-a.com"}
    meta = (("user", "admin@org-a.com"), ("x-flshell-role", "project_admin"))
    with grpc.secure_channel(server.admin_address, member) as ch:
        def submit():
            yield admin_pb2.Chunk(header=json.dumps({**forged, "size": 1}))
            yield admin_pb2.Chunk(data=b"PK")

        with pytest.raises(grpc.RpcError) as e:
            ch.stream_unary(f"/{ADMIN_SERVICE}/SubmitJob")(
                (c.SerializeToString() for c in submit()), timeout=10, metadata=meta)
        assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert e.value.details() == "member cannot submit_job"
        for method in ("AbortJob", "DeleteJob", "CloneJob"):
            req = admin_pb2.JsonRequest(json=json.dumps({"job": job, **forged}))
            with pytest.raises(grpc.RpcError) as e:
                ch.unary_unary(f"/{ADMIN_SERVICE}/{method}")(req.SerializeToString(), timeout=10,
                                                              metadata=meta)
            assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED, method
            assert e.value.details() == "member cannot manage_job", method
    # through the Session: whatever name it is given, the server knows the certificate
    with Session.from_startup_kit(prod / ADMINS["member"], address=server.admin_address) as s:
        s.user = "admin@org-a.com"
        with pytest.raises(Denied, match="member cannot submit_job"):
            s.submit_job(HELLO)
        with pytest.raises(Denied, match="member cannot download_job"):
            s.download_job(job, setup["root"] / "dl")
        assert s.get_job(job)["status"] != "ABORTED"  # view: allowed, and nothing changed
    audit = [json.loads(line) for line in
             (setup["root"] / "server" / "audit.log").read_text().splitlines()]
    denied = [a for a in audit if a["verdict"] == "denied" and a["user"] == "member@org-a.com"]
    assert {a["command"] for a in denied} >= {"submit_job", "abort_job", "delete_job",
                                              "clone_job", "download_job"}
    assert all(a["role"] == "member" and a["org"] == "org-a" for a in denied)
    assert not any(a["user"] == "admin@org-a.com" and a["command"] != "job_status" and
                   a["verdict"] == "allowed" and a.get("job") == job for a in audit)


def test_the_console_attaches_with_a_kit_and_says_what_is_denied(setup):
    prod, server = setup["prod"], setup["server"]
    # the kits name localhost:8003 (project.yml); this test server has a free port instead
    at = ("--server", server.admin_address)
    r = run_flshell("--startup", prod / ADMINS["member"], *at, "-c", f"submit_job {HELLO}")
    assert r.returncode == 1 and "member cannot submit_job" in r.stderr, r.stdout + r.stderr
    r = run_flshell("--startup", prod / ADMINS["lead_b"], *at, "--format", "json", "-c", "sites")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "site-1" in r.stdout
    r = run_flshell("--server", server.admin_address, "-c", "sites")  # no certificate
    assert r.returncode == 3 and "unreachable" in r.stderr, r.stdout + r.stderr


def test_a_tampered_admin_kit_is_refused_naming_the_file(setup, tmp_path):
    kit = tmp_path / "lead"
    shutil.copytree(setup["prod"] / ADMINS["lead_a"], kit)
    cfg = kit / "startup" / "fed_admin.json"
    cfg.write_bytes(cfg.read_bytes().replace(b"lead", b"Lead", 1))
    r = run_flshell("--startup", kit, "-c", "list_jobs")
    assert r.returncode == 2 and "fed_admin.json: changed" in r.stderr, r.stderr


def test_tail_log_takes_a_site_name_never_a_path(setup):
    s = setup["sessions"]["lead_a"]
    job = s.submit_job(HELLO)
    from runtime.admin import BadArgument

    with pytest.raises(BadArgument, match="not a site name"):
        list(s.tail_log(job, site="../../../audit"))  # would be <server workspace>/audit.log


def test_a_command_on_several_sites_is_refused_whole_with_one_audit_line(setup):
    """orgadmin@org-a may operate org-a's sites only; `shutdown client` over every site (site-1
    of org-a, site-2 of org-b) is refused as one command: nothing is sent to site-1 either, and
    the audit log says denied once, naming site-2, not denied / allowed / denied."""
    prod, server = setup["prod"], setup["server"]
    site2 = GrpcSiteTransport(server.fl_address, credentials=kit_credentials(prod / "site-2"))
    site1 = GrpcSiteTransport(server.fl_address, credentials=kit_credentials(prod / "site-1"))
    audit_file = setup["root"] / "server" / "audit.log"
    try:
        site2.register("site-2", {})
        seen = len(audit_file.read_text().splitlines())
        with pytest.raises(Denied, match="nothing was done.*site-2: org_admin cannot operate"):
            setup["sessions"]["org_admin"].operate("shutdown", "client")
        # what site-1 was sent: earlier tests' jobs and commands, but no shutdown
        sent = []
        while (msg := site1.poll("site-1", 0.2)) is not None:
            sent.append(msg)
        assert SiteCommand("shutdown") not in sent, sent
        new = [json.loads(line) for line in audit_file.read_text().splitlines()[seen:]]
        lines = [a for a in new if a["command"] == "shutdown client"]
        assert [(a["verdict"], a["denied_sites"], a["sites"]) for a in lines] == \
            [("denied", ["site-2"], ["site-1", "site-2"])]
    finally:
        setup["server"].engine.remove_site("site-2")
        site1.close()
        site2.close()
