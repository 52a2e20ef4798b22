"""project.yml -> a validated Project; every error names the line it is on."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from provisioning.identity import ADMIN_ROLES

KEY_TYPES = {"ec": "ec", "ec-p256": "ec", "rsa": "rsa", "rsa-2048": "rsa"}
DEFAULT_VALIDITY_DAYS = 365
MAX_VALIDITY_DAYS = 36500

# Names become certificate CNs (at most 64 characters) and kit folder names.
_PROJECT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_SITE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")  # as `flshell client --name`
_HOST_NAME = re.compile(r"^(?=.{1,64}$)[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?"
                        r"(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$")
_EMAIL = re.compile(r"^(?=.{3,64}$)[A-Za-z0-9._%+-]+@[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$")
_ORG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$")
RESERVED_NAMES = {"ca", "server", "@all"}  # `ca/` is the CA's folder; the rest as flshell client

_TOP_KEYS = {"name": True, "participants": True, "validity_days": False, "key_type": False,
             "description": False}
_KEYS = {  # type -> {key: required}
    "server": {"type": True, "name": True, "fl_port": True, "admin_port": True, "host": False,
               "host_names": False, "org": False},
    "client": {"type": True, "name": True, "org": True, "allow_custom_code": False},
    "admin": {"type": True, "name": True, "org": True, "role": True},
}


class ProjectError(ValueError):
    """An invalid project.yml: `str(e)` is "PATH:LINE: message"."""

    def __init__(self, path: str, line: int, message: str) -> None:
        super().__init__(f"{path}:{line}: {message}")
        self.path, self.line, self.message = path, line, message


@dataclass(frozen=True)
class Participant:
    type: str  # server | client | admin
    name: str
    org: str = ""
    role: str = ""  # admins: project_admin | org_admin | lead | member
    fl_port: int = 0  # server only
    admin_port: int = 0  # server only
    host: str = "0.0.0.0"  # server only: the address it binds
    host_names: tuple[str, ...] = ()  # server only: extra DNS names / IPs for its certificate
    allow_custom_code: bool = True  # client only: site_policy.json
    line: int = 0


@dataclass(frozen=True)
class Project:
    name: str
    participants: tuple[Participant, ...]
    validity_days: int = DEFAULT_VALIDITY_DAYS
    key_type: str = "ec"  # ec (P-256) | rsa (2048 bits)
    description: str = ""
    source: str = field(default="project.yml", compare=False)

    @property
    def server(self) -> Participant:
        return next(p for p in self.participants if p.type == "server")

    @property
    def clients(self) -> list[Participant]:
        return [p for p in self.participants if p.type == "client"]

    @property
    def admins(self) -> list[Participant]:
        return [p for p in self.participants if p.type == "admin"]


def load_project(path: str | Path) -> Project:
    """Read and validate a project.yml; ProjectError ("PATH:LINE: message") if it is wrong."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ProjectError(str(path), 0, f"cannot read: {e.strerror or e}") from None
    return parse_project(text, str(path))


def parse_project(text: str, source: str = "project.yml") -> Project:
    """Validate project.yml text; `source` is the name errors start with."""
    return _Parser(source).parse(text)


def project_from_dict(data: dict[str, Any], source: str = "<project>") -> Project:
    """Validate a project given as a dict (e.g. one a POC builds); same rules as project.yml."""
    return parse_project(yaml.safe_dump(data, sort_keys=False), source)


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self._construct = yaml.constructor.SafeConstructor()

    def error(self, node_or_line: yaml.Node | int, message: str) -> ProjectError:
        line = node_or_line if isinstance(node_or_line, int) else _line(node_or_line)
        return ProjectError(self.source, line, message)

    def value(self, node: yaml.Node) -> Any:
        return self._construct.construct_object(node, deep=True)

    def mapping(self, node: yaml.Node, where: str, keys: dict[str, bool]) -> dict[str, yaml.Node]:
        if not isinstance(node, yaml.MappingNode):
            raise self.error(node, f"{where}: expected a mapping of keys to values")
        out: dict[str, yaml.Node] = {}
        lines: dict[str, int] = {}
        for knode, vnode in node.value:
            key = self.value(knode) if isinstance(knode, yaml.ScalarNode) else None
            if not isinstance(key, str):
                raise self.error(knode, f"{where}: keys must be names, got {key!r}")
            if key not in keys:
                raise self.error(knode, f"{where}: unknown key '{key}' "
                                        f"(expected one of: {', '.join(keys)})")
            if key in out:
                raise self.error(knode, f"{where}: key '{key}' given twice "
                                        f"(first on line {lines[key]})")
            out[key], lines[key] = vnode, _line(knode)
        for key, required in keys.items():
            if required and key not in out:
                raise self.error(node, f"{where}: missing required key '{key}'")
        return out

    def scalar(self, node: yaml.Node, where: str, kind: type, expected: str) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            kind_name = "list" if isinstance(node, yaml.SequenceNode) else "mapping"
            raise self.error(node, f"{where}: expected {expected}, got a {kind_name}")
        v = self.value(node)
        if not isinstance(v, kind) or (isinstance(v, bool) and kind is not bool):
            raise self.error(node, f"{where}: expected {expected}, got {v!r}")
        return v

    def text(self, node: yaml.Node, where: str, pattern: re.Pattern[str], expected: str) -> str:
        v = self.scalar(node, where, str, expected)
        if not pattern.match(v):
            raise self.error(node, f"{where}: expected {expected}, got {v!r}")
        return v

    def port(self, node: yaml.Node, where: str) -> int:
        v = self.scalar(node, where, int, "a port number 1-65535")
        if not 1 <= v <= 65535:
            raise self.error(node, f"{where}: expected a port number 1-65535, got {v}")
        return v

    def parse(self, text: str) -> Project:
        try:
            root = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark or e.context_mark
            line = mark.line + 1 if mark else 1
            raise self.error(line, f"not valid YAML: {e.problem or e}") from None
        except yaml.YAMLError as e:
            raise self.error(1, f"not valid YAML: {e}") from None
        if root is None:
            raise self.error(1, "empty file: expected 'name' and 'participants'")
        top = self.mapping(root, "project", _TOP_KEYS)
        name = self.text(top["name"], "name", _PROJECT_NAME,
                         "a project name (letters, digits, '.', '_', '-'; at most 64)")
        validity = DEFAULT_VALIDITY_DAYS
        if "validity_days" in top:
            validity = self.scalar(top["validity_days"], "validity_days", int, "a number of days")
            if not 1 <= validity <= MAX_VALIDITY_DAYS:
                raise self.error(top["validity_days"],
                                 f"validity_days: expected 1-{MAX_VALIDITY_DAYS}, got {validity}")
        key_type = "ec"
        if "key_type" in top:
            kt = self.scalar(top["key_type"], "key_type", str, "ec or rsa")
            if kt.lower() not in KEY_TYPES:
                raise self.error(top["key_type"], f"key_type: expected ec (P-256) or rsa "
                                                  f"(2048 bits), got {kt!r}")
            key_type = KEY_TYPES[kt.lower()]
        description = ""
        if "description" in top:
            description = str(self.scalar(top["description"], "description", str, "text"))
        plist = top["participants"]
        if not isinstance(plist, yaml.SequenceNode) or not plist.value:
            raise self.error(plist, "participants: expected a list of participants "
                                    "(one server, its sites and admins)")
        participants = [self.participant(node, i) for i, node in enumerate(plist.value)]
        self.check_set(participants, plist)
        return Project(name=name, participants=tuple(participants), validity_days=validity,
                       key_type=key_type, description=description, source=self.source)

    def participant(self, node: yaml.Node, i: int) -> Participant:
        where = f"participants[{i}]"
        if not isinstance(node, yaml.MappingNode):
            raise self.error(node, f"{where}: expected a mapping (type, name, ...)")
        type_node = next((v for k, v in node.value
                          if isinstance(k, yaml.ScalarNode) and k.value == "type"), None)
        if type_node is None:
            raise self.error(node, f"{where}: missing required key 'type' "
                                   f"(server, client or admin)")
        ptype = self.scalar(type_node, f"{where}.type", str, "server, client or admin")
        if ptype not in _KEYS:
            raise self.error(type_node, f"{where}.type: expected server, client or admin, "
                                        f"got {ptype!r}")
        m = self.mapping(node, f"{where} ({ptype})", _KEYS[ptype])
        line = _line(m["name"])
        if ptype == "server":
            pname = self.text(m["name"], f"{where}.name", _HOST_NAME,
                              "the server's host name (e.g. fl.example.com)")
            kw: dict[str, Any] = {"fl_port": self.port(m["fl_port"], f"{where}.fl_port"),
                                  "admin_port": self.port(m["admin_port"], f"{where}.admin_port")}
            if kw["fl_port"] == kw["admin_port"]:
                raise self.error(m["admin_port"], f"{where}.admin_port: must differ from "
                                                  f"fl_port ({kw['fl_port']})")
            if "host" in m:
                kw["host"] = self.host(m["host"], f"{where}.host")
            if "host_names" in m:
                names = m["host_names"]
                if not isinstance(names, yaml.SequenceNode):
                    raise self.error(names, f"{where}.host_names: expected a list of host names")
                kw["host_names"] = tuple(self.host(n, f"{where}.host_names") for n in names.value)
            if "org" in m:
                kw["org"] = self.text(m["org"], f"{where}.org", _ORG, "an organisation name")
            return Participant(type="server", name=pname, line=line, **kw)
        org = self.text(m["org"], f"{where}.org", _ORG,
                        "an organisation name (letters, digits, ' ', '.', '_', '-')")
        if ptype == "client":
            pname = self.text(m["name"], f"{where}.name", _SITE_NAME,
                              "a site name (letters, digits, '.', '_', '-'; at most 63)")
            allow = True
            if "allow_custom_code" in m:
                allow = self.scalar(m["allow_custom_code"], f"{where}.allow_custom_code", bool,
                                    "true or false")
            return Participant(type="client", name=pname, org=org, allow_custom_code=allow,
                               line=line)
        pname = self.text(m["name"], f"{where}.name", _EMAIL, "an e-mail address")
        role = self.scalar(m["role"], f"{where}.role", str, "a role")
        if role not in ADMIN_ROLES:
            raise self.error(m["role"], f"{where}.role: unknown role {role!r} "
                                        f"(expected one of: {', '.join(ADMIN_ROLES)})")
        return Participant(type="admin", name=pname, org=org, role=role, line=line)

    def host(self, node: yaml.Node, where: str) -> str:
        v = self.scalar(node, where, str, "a host name or IP address")
        try:
            ipaddress.ip_address(v)
            return v
        except ValueError:
            pass
        if not _HOST_NAME.match(v):
            raise self.error(node, f"{where}: expected a host name or IP address, got {v!r}")
        return v

    def check_set(self, participants: list[Participant], plist: yaml.Node) -> None:
        servers = [p for p in participants if p.type == "server"]
        if not servers:
            raise self.error(plist, "participants: no server (exactly one participant "
                                    "must have type: server)")
        if len(servers) > 1:
            raise self.error(servers[1].line, f"participants: a second server "
                                              f"'{servers[1].name}' (the first is "
                                              f"'{servers[0].name}' on line {servers[0].line}); "
                                              f"exactly one server is allowed")
        seen: dict[str, Participant] = {}
        for p in participants:
            key = p.name.lower()  # host names and e-mail domains ignore case; so do some disks
            if key in RESERVED_NAMES and p.type != "server":
                raise self.error(p.line, f"name '{p.name}' is reserved; choose another")
            if key == "ca":
                raise self.error(p.line, "name 'ca' is reserved for the CA folder; choose another")
            if key in seen:
                raise self.error(p.line, f"duplicate name '{p.name}' (first on line "
                                         f"{seen[key].line}); names must be unique")
            seen[key] = p
