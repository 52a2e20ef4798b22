"""project.yml validation: every error names the line it is on."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from provisioning.project import ProjectError, load_project, parse_project, project_from_dict

ROOT = Path(__file__).resolve().parents[2]

GOOD = """\
name: demo
participants:
  - {type: server, name: fl.example.com, fl_port: 8002, admin_port: 8003}
  - {type: client, name: site-1, org: org-a}
  - {type: client, name: site-2, org: org-b, allow_custom_code: false}
  - {type: admin, name: admin@org-a.com, org: org-a, role: project_admin}
  - {type: admin, name: bob@org-b.com, org: org-b, role: member}
"""


def err(text: str) -> ProjectError:
    with pytest.raises(ProjectError) as e:
        parse_project(textwrap.dedent(text), "project.yml")
    return e.value


def test_good_project():
    p = parse_project(GOOD)
    assert p.name == "demo" and p.key_type == "ec" and p.validity_days == 365
    assert (p.server.name, p.server.fl_port, p.server.admin_port, p.server.host) == \
        ("fl.example.com", 8002, 8003, "0.0.0.0")
    assert [c.name for c in p.clients] == ["site-1", "site-2"]
    assert [c.allow_custom_code for c in p.clients] == [True, False]
    assert [(a.name, a.org, a.role) for a in p.admins] == [
        ("admin@org-a.com", "org-a", "project_admin"), ("bob@org-b.com", "org-b", "member")]
    assert [x.line for x in p.participants] == [3, 4, 5, 6, 7]


def test_example_project_is_valid():
    p = load_project(ROOT / "examples" / "project.yml")
    assert p.server.name == "localhost" and len(p.clients) == 2
    assert {a.role for a in p.admins} == {"project_admin", "lead", "member"}


def test_options():
    p = parse_project("name: x\nvalidity_days: 30\nkey_type: RSA\nparticipants:\n"
                      "  - {type: server, name: 10.0.0.5, fl_port: 1, admin_port: 65535, "
                      "host: 10.0.0.5, host_names: [fl.lan, 192.168.1.2], org: hq}\n")
    assert (p.validity_days, p.key_type) == (30, "rsa")
    assert p.server.host_names == ("fl.lan", "192.168.1.2") and p.server.org == "hq"


def test_error_format_names_file_and_line(tmp_path):
    f = tmp_path / "project.yml"
    f.write_text("name: demo\nparticipants:\n  - {type: server, name: h, fl_port: 1, "
                 "admin_port: 2, colour: red}\n")
    with pytest.raises(ProjectError) as e:
        load_project(f)
    assert str(e.value).startswith(f"{f}:3: ")
    assert "unknown key 'colour'" in str(e.value) and e.value.line == 3


def test_unknown_top_level_key_at_its_line():
    e = err("""\
        name: demo
        participants:
          - {type: server, name: h, fl_port: 1, admin_port: 2}
        builders: []
        """)
    assert e.line == 4 and "unknown key 'builders'" in str(e)
    assert str(e).startswith("project.yml:4: ")


def test_unknown_participant_key_at_its_line():
    e = err("""\
        name: demo
        participants:
          - type: server
            name: h
            fl_port: 1
            admin_port: 2
          - type: client
            name: site-1
            org: a
            gpus: 2
        """)
    assert e.line == 10 and "participants[1] (client): unknown key 'gpus'" in str(e)


def test_key_of_another_type_is_unknown():
    e = err("""\
        name: demo
        participants:
          - {type: server, name: h, fl_port: 1, admin_port: 2}
          - {type: client, name: site-1, org: a, role: lead}
        """)
    assert e.line == 4 and "unknown key 'role'" in str(e)


def test_duplicate_name_at_its_line():
    e = err("""\
        name: demo
        participants:
          - {type: server, name: h, fl_port: 1, admin_port: 2}
          - {type: client, name: site-1, org: a}
          - {type: client, name: site-2, org: a}
          - type: client
            org: b
            name: site-1
        """)
    assert e.line == 8 and "duplicate name 'site-1' (first on line 4)" in str(e)


def test_duplicate_name_ignores_case_and_type():
    e = err("""\
        name: demo
        participants:
          - {type: server, name: Site-1, fl_port: 1, admin_port: 2}
          - {type: client, name: site-1, org: a}
        """)
    assert e.line == 4 and "duplicate name" in str(e)


def test_duplicate_key_in_one_mapping():
    e = err("""\
        name: demo
        participants:
          - {type: server, name: h, fl_port: 1, admin_port: 2}
        name: other
        """)
    assert e.line == 4 and "key 'name' given twice (first on line 1)" in str(e)


def test_bad_role():
    e = err("""\
        name: demo
        participants:
          - {type: server, name: h, fl_port: 1, admin_port: 2}
          - type: admin
            name: a@b.org
            org: b
            role: superuser
        """)
    assert e.line == 7 and "unknown role 'superuser'" in str(e) and "project_admin" in str(e)


def test_two_servers():
    e = err("""\
        name: demo
        participants:
          - {type: server, name: h1, fl_port: 1, admin_port: 2}
          - {type: client, name: site-1, org: a}
          - {type: server, name: h2, fl_port: 3, admin_port: 4}
        """)
    assert e.line == 5 and "second server 'h2'" in str(e) and "line 3" in str(e)


def test_no_server():
    e = err("""\
        name: demo
        participants:
          - {type: client, name: site-1, org: a}
        """)
    assert e.line == 3 and "no server" in str(e)


@pytest.mark.parametrize("ports, line_snippet", [
    ("fl_port: 0, admin_port: 2", "fl_port: expected a port number 1-65535, got 0"),
    ("fl_port: 1, admin_port: 65536", "admin_port: expected a port number 1-65535, got 65536"),
    ("fl_port: '8002', admin_port: 2", "fl_port: expected a port number 1-65535, got '8002'"),
    ("fl_port: true, admin_port: 2", "fl_port: expected a port number 1-65535, got True"),
    ("fl_port: 8002, admin_port: 8002", "admin_port: must differ from fl_port (8002)"),
])
def test_ports(ports, line_snippet):
    e = err(f"name: demo\nparticipants:\n  - {{type: server, name: h, {ports}}}\n")
    assert e.line == 3 and line_snippet in str(e)


def test_missing_port():
    e = err("name: demo\nparticipants:\n  - {type: server, name: h, fl_port: 1}\n")
    assert e.line == 3 and "missing required key 'admin_port'" in str(e)


@pytest.mark.parametrize("participant, snippet", [
    ("{type: client, name: site-1}", "missing required key 'org'"),
    ("{type: relay, name: r}", "expected server, client or admin, got 'relay'"),
    ("{name: r}", "missing required key 'type'"),
    ("{type: client, name: ../evil, org: a}", "expected a site name"),
    ("{type: client, name: ca, org: a}", "reserved"),
    ("{type: client, name: server, org: a}", "reserved"),
    ("{type: admin, name: not-an-email, org: a, role: lead}", "expected an e-mail address"),
    ("{type: client, name: s, org: a, allow_custom_code: maybe}", "expected true or false"),
    ("[a, b]", "expected a mapping"),
])
def test_bad_participants(participant, snippet):
    e = err("name: demo\nparticipants:\n  - {type: server, name: h, fl_port: 1, admin_port: 2}\n"
            f"  - {participant}\n")
    assert e.line == 4 and snippet in str(e)


@pytest.mark.parametrize("text, line, snippet", [
    ("", 1, "empty file"),
    ("- a\n- b\n", 1, "expected a mapping"),
    ("name: demo\nparticipants: []\n", 2, "expected a list of participants"),
    ("participants:\n  - {type: server, name: h, fl_port: 1, admin_port: 2}\n", 1,
     "missing required key 'name'"),
    ("name: demo\nkey_type: dsa\nparticipants: []\n", 2, "key_type: expected ec (P-256) or rsa"),
    ("name: demo\nvalidity_days: 0\nparticipants: []\n", 2, "validity_days: expected 1-"),
    ("name: demo\nparticipants:\n  - {type: server, name: h\n", 4, "not valid YAML"),
    ("name: 'bad name'\nparticipants: []\n", 1, "expected a project name"),
])
def test_bad_files(text, line, snippet):
    e = err(text)
    assert e.line == line and snippet in str(e), str(e)


def test_unreadable_file(tmp_path):
    with pytest.raises(ProjectError, match="cannot read"):
        load_project(tmp_path / "missing.yml")


def test_project_from_dict():
    p = project_from_dict({"name": "poc", "participants": [
        {"type": "server", "name": "localhost", "fl_port": 9002, "admin_port": 9003},
        {"type": "client", "name": "site-1", "org": "poc"}]})
    assert (p.server.fl_port, p.clients[0].name) == (9002, "site-1")
    with pytest.raises(ProjectError, match=r"<project>:\d+: .*unknown key 'port'"):
        project_from_dict({"name": "poc", "participants": [{"type": "server", "port": 1}]})
