"""authorization.json: the default role x right matrix, conditions, and validation."""

from __future__ import annotations

import json

import pytest

from provisioning import DEFAULT_POLICY, PolicyError, load_policy, parse_project, provision
from provisioning.policy import CONDITIONS, RIGHTS, ROLES, Policy

# The default the security issue asks for, cell by cell.
EXPECTED = {
    "project_admin": dict.fromkeys(RIGHTS, "any"),
    "org_admin": {"submit_job": "any", "manage_job": "own_org", "download_job": "own_org",
                  "view": "any", "operate": "own_org", "byoc": "any"},
    "lead": {"submit_job": "any", "manage_job": "own_job", "download_job": "own_job",
             "view": "any", "operate": "own_org", "byoc": "any"},
    "member": {"submit_job": "none", "manage_job": "none", "download_job": "none", "view": "any",
               "operate": "none", "byoc": "none"},
}

# Who is acting on whose job: alice (org-a) is the user.
SCENARIOS = {
    "own_job": dict(job_owner="alice", job_owner_org="org-a"),
    "same_org_other_user": dict(job_owner="bob", job_owner_org="org-a"),
    "other_org": dict(job_owner="carol", job_owner_org="org-b"),
}
ALLOWED = {  # condition -> scenario -> allowed
    "any": {"own_job": True, "same_org_other_user": True, "other_org": True},
    "own_org": {"own_job": True, "same_org_other_user": True, "other_org": False},
    "own_job": {"own_job": True, "same_org_other_user": False, "other_org": False},
    "none": {"own_job": False, "same_org_other_user": False, "other_org": False},
}


@pytest.fixture(scope="module")
def policy_file(tmp_path_factory):
    out = tmp_path_factory.mktemp("policy") / "prod"
    provision(parse_project("name: p\nparticipants:\n  - {type: server, name: h, fl_port: 1, "
                            "admin_port: 2}\n"), out)
    return out / "h" / "local" / "authorization.json"


def file_cells(path) -> list[tuple[str, str, str]]:
    perms = json.loads(path.read_text())["permissions"]
    return [(role, right, perms[role][right]) for role in perms for right in perms[role]]


def test_server_kit_ships_the_default(policy_file):
    assert json.loads(policy_file.read_text()) == DEFAULT_POLICY
    assert {(r, ri): c for r, ri, c in file_cells(policy_file)} == \
        {(r, ri): EXPECTED[r][ri] for r in ROLES for ri in RIGHTS}
    assert load_policy(policy_file).table == EXPECTED


def test_full_matrix_from_the_file(policy_file):
    """Every role x right cell of the shipped file, in every ownership scenario."""
    policy = load_policy(policy_file)
    cells = file_cells(policy_file)
    assert len(cells) == len(ROLES) * len(RIGHTS) == 24
    checked = 0
    for role, right, cond in cells:
        for scenario, job in SCENARIOS.items():
            ok, reason = policy.check(role, right, user="alice", user_org="org-a", **job)
            assert ok is ALLOWED[cond][scenario], (role, right, cond, scenario, reason)
            assert reason.startswith(f"{role} {'may' if ok else 'cannot'} {right}"), reason
            checked += 1
    assert checked == 72


@pytest.mark.parametrize("role, right, reason", [
    ("member", "submit_job", "member cannot submit_job"),
    ("member", "byoc", "member cannot byoc"),
    ("member", "operate", "member cannot operate"),
])
def test_denial_reasons(role, right, reason):
    ok, why = Policy.default().check(role, right, user="ann", user_org="org-a")
    assert (ok, why) == (False, reason)


def test_own_job_and_own_org_reasons():
    p = Policy.default()
    ok, why = p.check("lead", "manage_job", user="alice", user_org="org-a", job_owner="bob",
                      job_owner_org="org-a")
    assert not ok
    assert why == "lead cannot manage_job on a job submitted by bob (only their own jobs)"
    ok, why = p.check("org_admin", "download_job", user="alice", user_org="org-a",
                      job_owner="carol", job_owner_org="org-b")
    assert not ok and "org_admin cannot download_job on a job of org org-b" in why


def test_submit_is_the_users_own_job():
    p = Policy.from_dict({"permissions": {"lead": {"submit_job": "own_job", "byoc": "own_org"}}})
    assert p.check("lead", "submit_job", user="alice", user_org="org-a")[0]
    assert p.check("lead", "byoc", user="alice", user_org="org-a")[0]


def test_operate_on_a_site_uses_the_sites_org():
    p = Policy.default()
    assert p.check("lead", "operate", user="alice", user_org="org-a", site_org="org-a")[0]
    ok, why = p.check("lead", "operate", user="alice", user_org="org-a", site_org="org-b")
    assert not ok and "site of org org-b" in why
    ok, why = p.check("org_admin", "operate", user="alice", user_org="org-a")  # system-wide
    assert not ok and "unknown" in why
    assert p.check("project_admin", "operate", user="root", user_org="x")[0]


def test_missing_context_denies():
    p = Policy.default()
    assert not p.check("lead", "manage_job", user="alice", user_org="org-a")[0]
    assert not p.check("org_admin", "manage_job", user="alice", user_org="", job_owner="bob",
                       job_owner_org="")[0]


def test_unknown_role_is_denied_and_unknown_right_is_a_bug():
    ok, why = Policy.default().check("client", "view", user="site-1", user_org="org-a")
    assert not ok and why.startswith("client cannot view: unknown role")
    with pytest.raises(ValueError, match="unknown right 'fly'"):
        Policy.default().check("lead", "fly")


def test_shorthand_and_missing_cells():
    p = Policy.from_dict({"permissions": {"lead": "any", "member": {"view": "any"}}})
    assert p.table["lead"] == dict.fromkeys(RIGHTS, "any")
    assert p.table["member"]["download_job"] == "none"
    assert p.table["project_admin"] == dict.fromkeys(RIGHTS, "none")  # absent: deny


@pytest.mark.parametrize("data, snippet", [
    ({"permissions": {"superuser": "any"}}, "permissions.superuser: unknown role"),
    ({"permissions": {"lead": {"fly": "any"}}}, "permissions.lead.fly: unknown right"),
    ({"permissions": {"lead": {"view": "sometimes"}}},
     "permissions.lead.view: unknown condition 'sometimes'"),
    ({"permissions": {"lead": "maybe"}}, "permissions.lead: unknown condition 'maybe'"),
    ({"permissions": {"lead": ["any"]}}, "permissions.lead: expected an object"),
    ({"permissions": []}, "permissions: expected an object"),
    ({}, "permissions: expected an object"),
    ({"permissions": {}, "roles": {}}, "unknown key 'roles'"),
    ({"format_version": "2.0", "permissions": {}}, "format_version: expected '1.0'"),
    ([], "expected a JSON object"),
])
def test_validation_names_the_key(tmp_path, data, snippet):
    f = tmp_path / "authorization.json"
    f.write_text(json.dumps(data))
    with pytest.raises(PolicyError) as e:
        load_policy(f)
    assert str(e.value).startswith(str(f)) and snippet in str(e.value), str(e.value)


def test_unreadable_files(tmp_path):
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(PolicyError, match="not valid JSON"):
        load_policy(tmp_path / "bad.json")


def test_constants():
    assert ROLES == ("project_admin", "org_admin", "lead", "member")
    assert RIGHTS == ("submit_job", "manage_job", "download_job", "view", "operate", "byoc")
    assert CONDITIONS == ("any", "own_org", "own_job", "none")
    assert Policy.from_dict(Policy.default().to_dict()).table == EXPECTED
