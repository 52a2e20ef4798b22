"""The admin authorization policy (authorization.json): roles x rights -> a condition."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provisioning.identity import ADMIN_ROLES

ROLES = ADMIN_ROLES
RIGHTS = ("submit_job", "manage_job", "download_job", "view", "operate", "byoc")
CONDITIONS = ("any", "own_org", "own_job", "none")
RIGHT_HELP = {
    "submit_job": "submit a job",
    "manage_job": "abort, delete or clone a job",
    "download_job": "download a job's results and logs",
    "view": "list and show jobs, sites, logs and system info",
    "operate": "site and system operations (restart, shutdown, remove a site)",
    "byoc": "submit a job that brings its own code (custom/)",
}
FORMAT_VERSION = "1.0"

DEFAULT_POLICY: dict[str, Any] = {
    "format_version": FORMAT_VERSION,
    "description": "Rights per admin role. Conditions: any | own_org (the job's or site's org "
                   "is the user's) | own_job (the user submitted the job) | none.",
    "permissions": {
        "project_admin": {r: "any" for r in RIGHTS},
        "org_admin": {"submit_job": "any", "manage_job": "own_org", "download_job": "own_org",
                      "view": "any", "operate": "own_org", "byoc": "any"},
        "lead": {"submit_job": "any", "manage_job": "own_job", "download_job": "own_job",
                 "view": "any", "operate": "own_org", "byoc": "any"},
        "member": {"submit_job": "none", "manage_job": "none", "download_job": "none",
                   "view": "any", "operate": "none", "byoc": "none"},
    },
}


class PolicyError(ValueError):
    """An invalid authorization policy; the message names the file and the key."""


@dataclass(frozen=True)
class Policy:
    table: dict[str, dict[str, str]]  # role -> right -> condition; every cell present

    @classmethod
    def from_dict(cls, data: Any, source: str = "authorization.json") -> "Policy":
        if not isinstance(data, dict):
            raise PolicyError(f"{source}: expected a JSON object with 'permissions'")
        for key in data:
            if key not in ("format_version", "description", "permissions"):
                raise PolicyError(f"{source}: unknown key '{key}' (expected format_version, "
                                  f"description, permissions)")
        version = data.get("format_version", FORMAT_VERSION)
        if str(version) != FORMAT_VERSION:
            raise PolicyError(f"{source}: format_version: expected {FORMAT_VERSION!r}, "
                              f"got {version!r}")
        perms = data.get("permissions")
        if not isinstance(perms, dict):
            raise PolicyError(f"{source}: permissions: expected an object of role -> rights")
        table = {role: {right: "none" for right in RIGHTS} for role in ROLES}  # default: deny
        for role, rights in perms.items():
            if role not in ROLES:
                raise PolicyError(f"{source}: permissions.{role}: unknown role "
                                  f"(expected one of: {', '.join(ROLES)})")
            if isinstance(rights, str):  # "any" / "none" for every right
                _condition(rights, f"{source}: permissions.{role}")
                table[role] = {right: rights for right in RIGHTS}
                continue
            if not isinstance(rights, dict):
                raise PolicyError(f"{source}: permissions.{role}: expected an object of "
                                  f"right -> condition, or one condition for all rights")
            for right, cond in rights.items():
                if right not in RIGHTS:
                    raise PolicyError(f"{source}: permissions.{role}.{right}: unknown right "
                                      f"(expected one of: {', '.join(RIGHTS)})")
                table[role][right] = _condition(cond, f"{source}: permissions.{role}.{right}")
        return cls(table)

    @classmethod
    def default(cls) -> "Policy":
        return cls.from_dict(DEFAULT_POLICY, "DEFAULT_POLICY")

    def to_dict(self) -> dict[str, Any]:
        return {"format_version": FORMAT_VERSION, "permissions": copy.deepcopy(self.table)}

    def condition(self, role: str, right: str) -> str:
        if right not in RIGHTS:
            raise ValueError(f"unknown right {right!r} (expected one of: {', '.join(RIGHTS)})")
        return self.table.get(role, {}).get(right, "none")

    def check(self, role: str, right: str, *, user: str | None = None,
              user_org: str | None = None, job_owner: str | None = None,
              job_owner_org: str | None = None, site_org: str | None = None) -> tuple[bool, str]:
        """(allowed, reason) for a user with `role` exercising `right`.

        own_org compares `user_org` with `site_org` when given (operate on a site), else with
        `job_owner_org`; own_job compares `user` with `job_owner`. For submit_job and byoc the
        job is the user's own, so missing owner fields default to the user's.
        Denials read "<role> cannot <right>...", e.g. "member cannot submit_job".
        """
        cond = self.condition(role, right)  # ValueError for an unknown right: a caller's bug
        if role not in self.table:
            return False, f"{role or 'no role'} cannot {right}: unknown role (expected one of: " \
                          f"{', '.join(ROLES)})"
        if cond == "any":
            return True, f"{role} may {right}"
        if cond == "none":
            return False, f"{role} cannot {right}"
        creating = right in ("submit_job", "byoc")
        if cond == "own_job":
            owner = job_owner if job_owner is not None else (user if creating else None)
            if not user or not owner:
                return False, f"{role} cannot {right}: only their own jobs, and the job's " \
                              f"submitter is unknown"
            if owner == user:
                return True, f"{role} may {right} on their own job"
            return False, f"{role} cannot {right} on a job submitted by {owner} " \
                          f"(only their own jobs)"
        target = site_org if site_org is not None else job_owner_org
        if target is None and creating:
            target = user_org
        what = "site" if site_org is not None else "job"
        if not user_org or not target:
            return False, f"{role} cannot {right}: only their own org's, and the {what}'s org " \
                          f"is unknown"
        if target == user_org:
            return True, f"{role} may {right} within their org {user_org}"
        return False, f"{role} cannot {right} on a {what} of org {target} (only their own org, " \
                      f"{user_org})"


def _condition(value: Any, where: str) -> str:
    if value not in CONDITIONS:
        raise PolicyError(f"{where}: unknown condition {value!r} "
                          f"(expected one of: {', '.join(CONDITIONS)})")
    return value


def load_policy(path: str | Path) -> Policy:
    """Read and validate an authorization.json; PolicyError names the file and the bad key."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise PolicyError(f"{p}: cannot read ({e.strerror or e})") from None
    except ValueError as e:
        raise PolicyError(f"{p}: not valid JSON ({e})") from None
    return Policy.from_dict(data, str(p))


def write_policy(path: Path, policy: dict[str, Any] | None = None) -> None:
    path.write_text(json.dumps(policy or DEFAULT_POLICY, indent=2) + "\n", encoding="utf-8")
