"""Load and validate a job folder (meta.json + app folders) or a bare app folder into a Job."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from runtime.resources.gpus import ResourceSpecError, parse_resource_spec

from .configs import CLIENT_FILES, SERVER_FILES, parse_client_config, parse_server_config, read_json
from .errors import JobError, join_path, names, render
from .spec import ALL_SITES, SERVER, App, Job

META = "meta.json"


def load_job(path: str | Path) -> Job:
    """Load the job folder (or bare app folder) at `path`; raise JobError naming file and JSON path."""
    shown = str(path)
    root = Path(path)
    if not root.exists():
        raise JobError(None, None, f'job folder "{shown}" does not exist')
    if not root.is_dir():
        hint = " (unzip it first)" if root.suffix == ".zip" else ""
        if root.suffix == ".json":
            hint = f"; did you mean {root.parent.parent if root.parent.name == 'config' else root.parent}?"
        raise JobError(None, None, f'"{shown}" is a file, expected a job folder with meta.json{hint}')
    root = root.resolve()
    if (root / META).is_file():
        meta = _read_meta(root)
        deploy_map = meta["deploy_map"]
        apps = {name: _load_app(root, name, sites, f"{name}/", META) for name, sites in deploy_map.items()}
    elif (root / "config").is_dir():
        deploy_map = {root.name: [SERVER, ALL_SITES]}
        meta = {"name": root.name, "deploy_map": deploy_map, "min_clients": 1,
                "mandatory_clients": [], "resource_spec": {}}
        apps = {root.name: _load_app(root, root.name, deploy_map[root.name], "", "config")}
    else:
        raise _not_a_job(root, shown)
    return Job(root=root, name=meta["name"], meta=meta, deploy_map=deploy_map,
               min_clients=meta["min_clients"], mandatory_clients=meta["mandatory_clients"],
               resource_spec=meta["resource_spec"], apps=apps)


def _subdirs(root: Path) -> list[Path]:
    return sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))


def _app_folders(root: Path) -> list[str]:
    return [d.name for d in _subdirs(root) if (d / "config").is_dir()]


def _not_a_job(root: Path, shown: str) -> JobError:
    base = shown.rstrip("/\\") or shown
    what = (f'"{shown}" is not a job folder: looked for {base}/meta.json (a job) '
            f"and {base}/config/ (a single app), found neither")
    jobs = [d.name for d in _subdirs(root) if (d / META).is_file()]
    apps = _app_folders(root)
    if root.name == "config" and any(root.glob("config_*.json")):
        what += f"; did you mean {root.parent}?"
    elif (root / "meta.conf").exists() or (root / "meta.yml").exists():
        what += "; meta.conf/meta.yml are not supported, write meta.json"
    elif len(jobs) == 1:
        what += f"; did you mean {base}/{jobs[0]}?"
    elif jobs:
        what += f"; it holds several jobs, pass one of: {names(jobs)}"
    elif len(apps) == 1:
        what += f"; found app folder {apps[0]}/: add meta.json with a deploy_map, or pass {base}/{apps[0]}"
    elif apps:
        what += f"; found app folders ({names(apps)}) but no meta.json: add one with a deploy_map"
    return JobError(None, None, what)


def _read_meta(root: Path) -> dict[str, Any]:
    data = read_json(root, META)
    if not isinstance(data, dict):
        raise JobError(META, None, f"expected a JSON object, got {render(data)}")
    meta = dict(data)
    name = data.get("name", root.name)
    if not isinstance(name, str) or not name.strip():
        raise JobError(META, "name", f"expected a non-empty string, got {render(name)}")
    meta["name"] = name
    meta["deploy_map"] = _deploy_map(root, data)
    min_clients = data.get("min_clients", 1)
    if not isinstance(min_clients, int) or isinstance(min_clients, bool) or min_clients < 1:
        raise JobError(META, "min_clients", f"expected an integer >= 1, got {render(min_clients)}")
    mandatory = data.get("mandatory_clients", [])
    if not isinstance(mandatory, list) or not all(isinstance(s, str) and s for s in mandatory):
        raise JobError(META, "mandatory_clients", f"expected a list of site names, got {render(mandatory)}")
    resource_spec = data.get("resource_spec", {})
    if not isinstance(resource_spec, dict):
        raise JobError(META, "resource_spec", f"expected an object (site -> resources), got {render(resource_spec)}")
    try:
        parse_resource_spec(resource_spec)
    except ResourceSpecError as e:
        where = "resource_spec"
        for key in e.keys:
            where = join_path(where, key)
        raise JobError(META, where, e.message) from None
    _check_reachable(meta["deploy_map"], min_clients, mandatory)
    meta.update(min_clients=min_clients, mandatory_clients=list(mandatory), resource_spec=resource_spec)
    return meta


def _deploy_map(root: Path, data: dict) -> dict[str, list[str]]:
    found = _app_folders(root)
    if "deploy_map" not in data:
        if len(found) == 1:
            return {found[0]: [SERVER, ALL_SITES]}
        raise JobError(META, "deploy_map", f"missing, and the job has {len(found)} app folders "
                       f'({names(found)}); expected e.g. {{"app": ["{SERVER}", "{ALL_SITES}"]}}')
    raw = data["deploy_map"]
    if not isinstance(raw, dict) or not raw:
        raise JobError(META, "deploy_map", f"expected an object mapping app folder -> list of sites, got {render(raw)}")
    deploy: dict[str, list[str]] = {}
    owner: dict[str, str] = {}
    for app, sites in raw.items():
        where = join_path("deploy_map", app)
        if not app or app in (".", "..") or any(c in app for c in "/\\:") or app.startswith("."):
            raise JobError(META, where, "expected a plain app folder name (no slashes, dots or colons)")
        if not isinstance(sites, list) or not all(isinstance(s, str) and s.strip() for s in sites):
            raise JobError(META, where, f'expected a list of sites ("{SERVER}", "{ALL_SITES}" or site names), '
                                        f"got {render(sites)}")
        for site in sites:
            if site in owner and owner[site] != app:
                raise JobError(META, where, f'"{site}" is already deployed to app "{owner[site]}"')
            owner[site] = app
        if not (root / app).is_dir():
            raise JobError(META, "deploy_map", f'app "{app}" has no folder {app}/ (found: {names(found)})')
        deploy[app] = list(dict.fromkeys(sites))
    if SERVER not in owner:
        raise JobError(META, "deploy_map", f'no app is deployed to "{SERVER}" '
                                           f'(expected one app whose list includes "{SERVER}")')
    if not set(owner) - {SERVER}:
        raise JobError(META, "deploy_map", f'no app is deployed to client sites (expected "{ALL_SITES}" '
                                           "or site names in some app's list)")
    return deploy


def _check_reachable(deploy: dict[str, list[str]], min_clients: int, mandatory: list[str]) -> None:
    sites = {s for ss in deploy.values() for s in ss}
    if ALL_SITES in sites:
        return
    named = [s for ss in deploy.values() for s in ss if s != SERVER]
    if min_clients > len(named):
        raise JobError(META, "min_clients", f"expected at most {len(named)} (the sites named in deploy_map: "
                                            f"{names(named)}), got {min_clients}")
    for i, site in enumerate(mandatory):
        if site not in sites:
            raise JobError(META, join_path("mandatory_clients", i),
                           f'site "{site}" gets no app from deploy_map (named: {names(named)})')


def _config_file(root: Path, cfg_rel: str, candidates: tuple[str, ...]) -> str | None:
    present = [n for n in candidates if (root / cfg_rel / n).is_file()]
    if len(present) > 1:
        raise JobError(cfg_rel, None, f"both {present[0]} and {present[1]} exist; keep only one")
    return f"{cfg_rel}/{present[0]}" if present else None


def _load_app(root: Path, name: str, sites: list[str], prefix: str, map_file: str) -> App:
    app_root = root / prefix if prefix else root
    cfg_rel = f"{prefix}config"
    if not (root / cfg_rel).is_dir():
        raise JobError(prefix.rstrip("/") or name, None,
                       f"app folder has no config/ (expected {cfg_rel}/config_server.json and/or config_client.json)")
    server_rel = _config_file(root, cfg_rel, SERVER_FILES)
    client_rel = _config_file(root, cfg_rel, CLIENT_FILES)
    map_path = join_path("deploy_map", name) if map_file == META else None
    for needed, rel, side, files in ((SERVER in sites, server_rel, f'"{SERVER}"', SERVER_FILES),
                                     (bool(set(sites) - {SERVER}), client_rel, "client sites", CLIENT_FILES)):
        if needed and rel is None:
            stems = {f.rsplit(".", 1)[0] for f in files}
            others = sorted(p.name for p in (root / cfg_rel).iterdir() if p.name.split(".")[0] in stems)
            hint = f"; found {names(others)}: only JSON configs are supported" if others else ""
            raise JobError(map_file, map_path, f'app "{name}" is deployed to {side} but {cfg_rel}/ has no '
                                               f"{files[0]} (or {files[1]}){hint}")
    server_config = parse_server_config(root, server_rel) if server_rel else None
    client_config = parse_client_config(root, client_rel) if client_rel else None
    custom = app_root / "custom"
    return App(name=name, root=app_root, server_config=server_config, client_config=client_config,
               custom_dir=custom if custom.is_dir() else None)
