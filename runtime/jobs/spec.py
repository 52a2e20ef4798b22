"""Data model of a loaded job folder: Job, App, server/client configs and component specs."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import JobError

SERVER = "server"
ALL_SITES = "@ALL"


@dataclass
class ComponentSpec:
    """One `{"id", "path", "args"}` entry; `where` is `<file>: <json path>` for error messages."""

    id: str | None
    path: str
    args: dict[str, Any]
    where: str
    file: str | None = None
    json_path: str | None = None

    def __post_init__(self) -> None:
        if self.file is None and self.json_path is None:
            file, sep, json_path = self.where.partition(": ")
            self.file, self.json_path = (file, json_path) if sep else (None, self.where or None)


@dataclass
class ExecutorSpec:
    """An `executors[i]` entry: the tasks it handles and the executor component."""

    tasks: list[str]
    executor: ComponentSpec
    where: str


@dataclass
class FilterSpec:
    """A `task_data_filters[i]` / `task_result_filters[i]` entry."""

    tasks: list[str]
    filters: list[ComponentSpec]
    where: str


@dataclass
class ServerConfig:
    """config_server.json (or config_fed_server.json) of one app."""

    workflows: list[ComponentSpec]
    components: list[ComponentSpec]
    variables: dict[str, Any]
    file: Path
    task_data_filters: list[FilterSpec] = field(default_factory=list)
    task_result_filters: list[FilterSpec] = field(default_factory=list)
    format_version: int = 2


@dataclass
class ClientConfig:
    """config_client.json (or config_fed_client.json) of one app."""

    executors: list[ExecutorSpec]
    components: list[ComponentSpec]
    task_data_filters: list[FilterSpec]
    task_result_filters: list[FilterSpec]
    variables: dict[str, Any]
    file: Path
    format_version: int = 2


@dataclass
class App:
    """One app folder of a job."""

    name: str
    root: Path
    server_config: ServerConfig | None
    client_config: ClientConfig | None
    custom_dir: Path | None


@dataclass
class Job:
    """A validated job folder."""

    root: Path
    name: str
    meta: dict[str, Any]
    deploy_map: dict[str, list[str]]
    min_clients: int
    mandatory_clients: list[str]
    resource_spec: dict[str, Any]
    apps: dict[str, App]

    def server_app(self) -> App:
        """The app deployed to "server"."""
        for app_name, sites in self.deploy_map.items():
            if SERVER in sites:
                return self.apps[app_name]
        raise JobError("meta.json", "deploy_map", f'no app is deployed to "{SERVER}"')

    def client_app_for(self, site: str) -> App | None:
        """The app a client site runs: the app naming the site, else the "@ALL" app, else None."""
        if site == SERVER:
            return None
        for wanted in (site, ALL_SITES):
            for app_name, sites in self.deploy_map.items():
                if wanted in sites:
                    return self.apps[app_name]
        return None

    def named_sites(self) -> list[str]:
        """Explicit client site names in deploy_map, in order, without duplicates."""
        seen: dict[str, None] = {}
        for sites in self.deploy_map.values():
            for site in sites:
                if site not in (SERVER, ALL_SITES):
                    seen.setdefault(site)
        return list(seen)
