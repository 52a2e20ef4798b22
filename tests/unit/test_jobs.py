"""Job folder loading, validation errors, {var} substitution and component building."""
from __future__ import annotations

import copy
import json
import pickle
from pathlib import Path
from typing import Any

import pytest

from runtime.jobs import (BUILTIN_NAMES, ArgError, ComponentBuilder, ComponentSpec, JobError, check_choice,
                          check_non_negative_number, check_positive_int, custom_imports, load_job, substitute)
from runtime.jobs import custom_import
from tests.unit.jobdata import components as comp

C = "tests.unit.jobdata.components"
SERVER_CFG: dict[str, Any] = {
    "format_version": 2,
    "num_rounds": 3,
    "workflows": [{"id": "ctl", "path": f"{C}.Controller",
                   "args": {"num_rounds": "{num_rounds}", "persistor_id": "persistor"}}],
    "components": [{"id": "persistor", "path": f"{C}.Persistor", "args": {}}],
}
CLIENT_CFG: dict[str, Any] = {
    "format_version": 2,
    "executors": [{"tasks": ["train", "validate"],
                   "executor": {"path": f"{C}.Executor", "args": {"site": "{SITE_NAME}"}}}],
}
FILES = {"server": "config_server.json", "client": "config_client.json"}
SCFG = "app/config/config_server.json"
CCFG = "app/config/config_client.json"


def write(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data, indent=2))


def make_job(root: Path, meta: Any = None, apps: dict | None = None) -> Path:
    """Write a job folder; `apps` maps app -> {"server"|"client"|file name|"custom": content}."""
    if apps is None:
        apps = {"app": {"server": SERVER_CFG, "client": CLIENT_CFG}}
    if meta is not None:
        write(root / "meta.json", meta)
    for app, files in apps.items():
        for kind, data in files.items():
            if kind == "custom":
                for name, text in data.items():
                    write(root / app / "custom" / name, text)
            else:
                write(root / app / "config" / FILES.get(kind, kind), data)
    return root


def server_with(**changes: Any) -> dict:
    cfg = copy.deepcopy(SERVER_CFG)
    cfg.update(changes)
    return cfg


def job_error(root: Path) -> str:
    with pytest.raises(JobError) as ei:
        load_job(root)
    text = str(ei.value)
    assert "\n" not in text
    return text


def build_error(spec: ComponentSpec, builder: ComponentBuilder) -> str:
    with pytest.raises(JobError) as ei:
        builder.build(spec)
    assert "\n" not in str(ei.value)
    return str(ei.value)


@pytest.fixture(autouse=True)
def _clean_custom_imports():
    yield
    custom_import.uninstall()


@pytest.fixture
def job(tmp_path: Path) -> Path:
    return make_job(tmp_path / "my_job", {"name": "hello", "deploy_map": {"app": ["server", "@ALL"]}})


def server_builder(root: Path, variables: dict | None = None) -> tuple[Any, ComponentBuilder]:
    loaded = load_job(root)
    app = loaded.server_app()
    return app, ComponentBuilder(app, app.server_config, variables)


# ---- valid jobs --------------------------------------------------------------------------------

def test_two_apps_with_deploy_map(tmp_path: Path) -> None:
    meta = {"name": "two", "min_clients": 2, "mandatory_clients": ["site-1"],
            "resource_spec": {"site-1": {"num_of_gpus": 1}}, "job_id": "kept", "custom_props": {"a": 1},
            "deploy_map": {"app_server": ["server"], "app_client": ["site-1", "site-2", "site-1"]}}
    root = make_job(tmp_path / "j", meta, {"app_server": {"server": SERVER_CFG},
                                          "app_client": {"client": CLIENT_CFG, "custom": {"model.py": "X = 1\n"}},
                                          "unused": {"server": "not even JSON"}})
    job = load_job(root)
    assert job.name == "two" and job.root == root.resolve()
    assert set(job.apps) == {"app_server", "app_client"}
    assert job.min_clients == 2 and job.mandatory_clients == ["site-1"]
    assert job.resource_spec == {"site-1": {"num_of_gpus": 1}}
    assert job.meta["job_id"] == "kept" and job.meta["custom_props"] == {"a": 1}
    assert job.server_app().name == "app_server"
    assert job.server_app().client_config is None
    assert job.client_app_for("site-2").name == "app_client"
    assert job.client_app_for("site-3") is None and job.client_app_for("server") is None
    assert job.named_sites() == ["site-1", "site-2"]
    client = job.apps["app_client"]
    assert client.custom_dir == root.resolve() / "app_client" / "custom"
    assert job.apps["app_server"].custom_dir is None
    ex = client.client_config.executors[0]
    assert ex.tasks == ["train", "validate"] and ex.executor.path == f"{C}.Executor"
    assert ex.executor.where == "app_client/config/config_client.json: executors[0].executor"
    wf = job.server_app().server_config.workflows[0]
    assert (wf.id, wf.where, wf.file, wf.json_path) == (
        "ctl", "app_server/config/config_server.json: workflows[0]", "app_server/config/config_server.json",
        "workflows[0]")
    assert job.server_app().server_config.variables == {"num_rounds": 3}


def test_all_sites_and_explicit_site(tmp_path: Path) -> None:
    root = make_job(tmp_path / "j", {"deploy_map": {"main": ["server", "@ALL"], "special": ["site-9"]}},
                    {"main": {"server": SERVER_CFG, "client": CLIENT_CFG}, "special": {"client": CLIENT_CFG}})
    job = load_job(root)
    assert job.name == "j" and job.min_clients == 1 and job.mandatory_clients == [] and job.resource_spec == {}
    assert job.client_app_for("site-1").name == "main"
    assert job.client_app_for("site-9").name == "special"
    assert job.named_sites() == ["site-9"]


def test_nvflare_file_names_name_key_and_disabled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(BUILTIN_NAMES, "Persistor", f"{C}.Persistor")
    server = server_with(components=[{"id": "persistor", "name": "Persistor", "args": {}},
                                     {"id": "off", "path": "no.such.Thing", "disabled": True}],
                         task_result_filters=[{"tasks": ["train"], "filters": [{"class_path": f"{C}.make_filter"}]}])
    root = make_job(tmp_path / "j", {"deploy_map": {"app": ["server", "@ALL"]}, "study": "x"},
                    {"app": {"config_fed_server.json": server, "config_fed_client.json": CLIENT_CFG}})
    job = load_job(root)
    cfg = job.server_app().server_config
    assert cfg.file.name == "config_fed_server.json"
    assert [c.path for c in cfg.components] == [f"{C}.Persistor"]
    assert cfg.task_result_filters[0].filters[0].path == f"{C}.make_filter"
    assert job.client_app_for("anyone").client_config.file.name == "config_fed_client.json"
    builder = ComponentBuilder(job.server_app(), cfg)
    assert builder.build(cfg.task_result_filters[0].filters[0]) == {"strength": 0.5}


def test_bare_app_folder(tmp_path: Path) -> None:
    root = make_job(tmp_path, apps={"hello-app": {"server": SERVER_CFG, "client": CLIENT_CFG}}) / "hello-app"
    job = load_job(str(root))
    assert job.name == "hello-app" and job.deploy_map == {"hello-app": ["server", "@ALL"]}
    assert job.server_app().root == root.resolve() and job.client_app_for("site-1").name == "hello-app"
    assert job.server_app().server_config.workflows[0].where == "config/config_server.json: workflows[0]"


def test_meta_without_deploy_map_uses_the_only_app(tmp_path: Path) -> None:
    job = load_job(make_job(tmp_path / "j", {"name": "n"}))
    assert job.deploy_map == {"app": ["server", "@ALL"]} and job.meta["deploy_map"] == job.deploy_map


# ---- {var} substitution ------------------------------------------------------------------------

def test_variables_typed_interpolated_and_caller_passed(tmp_path: Path) -> None:
    server = server_with(num_rounds=5, model_dir="/models", tags=["a", "b"], opts={"lr": 0.1}, ratio=0.5,
                         workflows=[{"path": f"{C}.Controller", "args": {
                             "num_rounds": "{num_rounds}", "name": "run-{JOB_ID}-{num_rounds}",
                             "tags": "{tags}", "options": {"nested": ["{opts}", "{model_dir}/x.npz"]},
                             "ratio": "{ratio}", "persistor_id": "persistor"}}])
    root = make_job(tmp_path / "j", {}, {"app": {"server": server, "client": CLIENT_CFG}})
    app, builder = server_builder(root, {"JOB_ID": "j42", "ratio": 0.25})
    spec = app.server_config.workflows[0]
    before = copy.deepcopy(spec.args)
    ctl = builder.build(spec)
    assert ctl.num_rounds == 5 and ctl.name == "run-j42-5" and ctl.tags == ["a", "b"] and ctl.ratio == 0.25
    assert ctl.options == {"nested": [{"lr": 0.1}, "/models/x.npz"]}
    assert spec.args == before and app.server_config.variables["tags"] == ["a", "b"]
    ctl.tags.append("c")
    assert builder.build(spec).tags == ["a", "b"]  # substituted values are copies


def test_substitute_leaves_other_braces_alone() -> None:
    data = {"a": "{x}", "b": "{ not a var }", "c": "{}", "d": ["{x}{x}", {"e": "{{x}}"}], "f": 1}
    out = substitute(data, {"x": 7})
    assert out == {"a": 7, "b": "{ not a var }", "c": "{}", "d": ["77", {"e": "{7}"}], "f": 1}
    assert data["a"] == "{x}"


def test_unknown_variable_at_build_and_load_time(tmp_path: Path) -> None:
    with pytest.raises(JobError) as ei:
        substitute({"n": ["{num_round}"]}, {"num_rounds": 1, "b": 2}, "f.json", "workflows[0].args")
    assert str(ei.value) == "f.json: workflows[0].args.n[0]: unknown variable {num_round} (defined: b, num_rounds)"
    server = server_with(workflows=[{"path": f"{C}.Controller", "args": {"num_rounds": "{num_round}"}}])
    root = make_job(tmp_path / "j", {}, {"app": {"server": server, "client": CLIENT_CFG}})
    assert job_error(root).startswith(
        f"{SCFG}: workflows[0].args.num_rounds: unknown variable {{num_round}} (defined: APP_DIR, ")


# ---- errors in the folder and meta.json --------------------------------------------------------

def test_missing_folder(tmp_path: Path) -> None:
    assert job_error(tmp_path / "nope") == f'job folder "{tmp_path / "nope"}" does not exist'


def test_not_a_job_folder(tmp_path: Path) -> None:
    (tmp_path / "empty" / "data").mkdir(parents=True)
    p = tmp_path / "empty"
    assert job_error(p) == (f'"{p}" is not a job folder: looked for {p}/meta.json (a job) '
                            f"and {p}/config/ (a single app), found neither")


def test_folder_holding_one_job_is_not_descended(tmp_path: Path) -> None:
    make_job(tmp_path / "outer" / "inner", {"name": "x"})
    assert job_error(tmp_path / "outer").endswith(f"found neither; did you mean {tmp_path / 'outer'}/inner?")


def test_meta_bad_json_reports_line_and_column(tmp_path: Path) -> None:
    root = make_job(tmp_path / "j", '{\n  "name": "x",\n  "deploy_map": {"app": ["server"]\n}\n')
    assert job_error(root) == "meta.json: invalid JSON at line 5, column 1: Expecting ',' delimiter"


def test_meta_duplicate_key_and_not_an_object(tmp_path: Path) -> None:
    assert job_error(make_job(tmp_path / "a", '{"name": "x", "name": "y"}')) == (
        'meta.json: invalid JSON: key "name" appears twice in the same object')
    assert job_error(make_job(tmp_path / "b", "[1, 2]")) == "meta.json: expected a JSON object, got [1, 2]"


@pytest.mark.parametrize("meta, expected", [
    ({"name": 5}, "meta.json: name: expected a non-empty string, got 5"),
    ({"min_clients": 0}, "meta.json: min_clients: expected an integer >= 1, got 0"),
    ({"min_clients": True}, "meta.json: min_clients: expected an integer >= 1, got true"),
    ({"min_clients": "2"}, 'meta.json: min_clients: expected an integer >= 1, got "2"'),
    ({"mandatory_clients": "site-1"}, 'meta.json: mandatory_clients: expected a list of site names, got "site-1"'),
    ({"resource_spec": []}, "meta.json: resource_spec: expected an object (site -> resources), got []"),
    ({"deploy_map": ["app"]}, 'meta.json: deploy_map: expected an object mapping app folder -> list of sites, '
                              'got ["app"]'),
    ({"deploy_map": {}}, "meta.json: deploy_map: expected an object mapping app folder -> list of sites, got {}"),
    ({"deploy_map": {"app": "server"}}, 'meta.json: deploy_map.app: expected a list of sites ("server", "@ALL" or '
                                        'site names), got "server"'),
    ({"deploy_map": {"../app": ["server"]}}, 'meta.json: deploy_map["../app"]: expected a plain app folder name '
                                             "(no slashes, dots or colons)"),
    ({"deploy_map": {"app": ["server", "site-1"]}, "min_clients": 2},
     "meta.json: min_clients: expected at most 1 (the sites named in deploy_map: site-1), got 2"),
    ({"deploy_map": {"app": ["server", "site-1"]}, "mandatory_clients": ["site-2"]},
     'meta.json: mandatory_clients[0]: site "site-2" gets no app from deploy_map (named: site-1)'),
])
def test_meta_field_types(tmp_path: Path, meta: dict, expected: str) -> None:
    assert job_error(make_job(tmp_path / "j", meta)) == expected


def test_deploy_map_naming_missing_app(tmp_path: Path) -> None:
    root = make_job(tmp_path / "j", {"deploy_map": {"app": ["server"], "app2": ["@ALL"]}})
    assert job_error(root) == 'meta.json: deploy_map: app "app2" has no folder app2/ (found: app)'


def test_deploy_map_without_server_or_clients(tmp_path: Path) -> None:
    assert job_error(make_job(tmp_path / "a", {"deploy_map": {"app": ["@ALL"]}})) == (
        'meta.json: deploy_map: no app is deployed to "server" (expected one app whose list includes "server")')
    assert job_error(make_job(tmp_path / "b", {"deploy_map": {"app": ["server"]}})) == (
        'meta.json: deploy_map: no app is deployed to client sites (expected "@ALL" or site names in '
        "some app's list)")


def test_site_in_two_apps(tmp_path: Path) -> None:
    apps = {"a": {"server": SERVER_CFG, "client": CLIENT_CFG}, "b": {"server": SERVER_CFG}}
    root = make_job(tmp_path / "j", {"deploy_map": {"a": ["server", "@ALL"], "b": ["server"]}}, apps)
    assert job_error(root) == 'meta.json: deploy_map.b: "server" is already deployed to app "a"'


def test_missing_deploy_map_with_two_apps(tmp_path: Path) -> None:
    apps = {"a": {"server": SERVER_CFG}, "b": {"client": CLIENT_CFG}}
    assert job_error(make_job(tmp_path / "j", {}, apps)) == (
        'meta.json: deploy_map: missing, and the job has 2 app folders (a, b); expected e.g. '
        '{"app": ["server", "@ALL"]}')


def test_app_folder_problems(tmp_path: Path) -> None:
    root = tmp_path / "a"
    write(root / "meta.json", {"deploy_map": {"app": ["server", "@ALL"]}})
    (root / "app" / "custom").mkdir(parents=True)
    assert job_error(root) == ("app: app folder has no config/ (expected app/config/config_server.json "
                               "and/or config_client.json)")
    both = make_job(tmp_path / "b", {"name": "b"}, {"app": {"server": SERVER_CFG, "client": CLIENT_CFG,
                                                            "config_fed_server.json": SERVER_CFG}})
    assert job_error(both) == ("app/config: both config_server.json and config_fed_server.json exist; "
                               "keep only one")
    no_client = make_job(tmp_path / "c", {"name": "c"}, {"app": {"server": SERVER_CFG,
                                                                 "config_fed_client.conf": "executors = []"}})
    assert job_error(no_client) == (
        'meta.json: deploy_map.app: app "app" is deployed to client sites but app/config/ has no '
        "config_client.json (or config_fed_client.json); found config_fed_client.conf: only JSON configs "
        "are supported")


# ---- errors in config files --------------------------------------------------------------------

@pytest.mark.parametrize("server, expected", [
    ({"format_version": 2}, f"{SCFG}: workflows: missing (expected a non-empty list of workflow components)"),
    ({"workflows": []}, f"{SCFG}: workflows: expected a non-empty list of components, got []"),
    ({"format_version": 3, "workflows": []}, f"{SCFG}: format_version: expected 2 (or 1), got 3"),
    ({"workflows": [{"id": "x", "args": {}}]},
     f'{SCFG}: workflows[0]: missing "path" (expected "path": "package.module.ClassName")'),
    ({"workflows": [{"path": "Controller"}]},
     f'{SCFG}: workflows[0].path: expected a dotted path like "package.module.ClassName", got "Controller"'),
    ({"workflows": [{"path": f"{C}.Controller", "args": [1]}]}, f"{SCFG}: workflows[0].args: expected an object, "
                                                                "got [1]"),
    ({"workflows": [{"path": f"{C}.Controller", "arg": {}}]},
     f'{SCFG}: workflows[0].arg: unknown key (did you mean "args"? expected: id, path, class_path, name, args, '
     "disabled)"),
    ({"workflows": [{"name": "FedAvgX"}]}, f'{SCFG}: workflows[0].name: unknown built-in name "FedAvgX" '
                                           '(known: FedAvg, NumpyModelPersistor, ScriptExecutor, WeightedAggregator); give "path": "package.module.ClassName"'),
    ({"workflows": [{"path": f"{C}.Controller"}], "components": [{"path": f"{C}.Persistor"}]},
     f'{SCFG}: components[0]: missing "id" (components are referenced by their id)'),
    ({"workflows": [{"id": "p", "path": f"{C}.Controller"}], "components": [{"id": "p", "path": f"{C}.Persistor"}]},
     f'{SCFG}: components[0].id: duplicate id "p" (first used at workflows[0])'),
    ({"workflows": [{"path": f"{C}.Controller"}], "executors": []},
     f"{SCFG}: executors: belongs in config_client.json, not in this file"),
    ({"workflows": [{"path": f"{C}.Controller"}], "component": [{"id": "p"}]},
     f'{SCFG}: component: unknown key (did you mean "components"?)'),
    ("[]", f"{SCFG}: expected a JSON object at the top level, got []"),
])
def test_server_config_errors(tmp_path: Path, server: Any, expected: str) -> None:
    root = make_job(tmp_path / "j", {}, {"app": {"server": server, "client": CLIENT_CFG}})
    assert job_error(root) == expected


@pytest.mark.parametrize("executors, expected", [
    ([{"tasks": "train", "executor": {"path": f"{C}.Executor"}}],
     f'{CCFG}: executors[0].tasks: expected a non-empty list of task names, got "train"'),
    ([{"tasks": ["train", 3], "executor": {"path": f"{C}.Executor"}}],
     f'{CCFG}: executors[0].tasks: expected a non-empty list of task names, got ["train", 3]'),
    ([{"tasks": ["train"]}], f'{CCFG}: executors[0]: missing "executor" (expected keys: tasks, executor)'),
    ([{"tasks": ["t"], "executor": {"path": f"{C}.Executor"}}, {"tasks": ["t"], "executor": {"path": f"{C}.X"}}],
     f'{CCFG}: executors[1].tasks[0]: task "t" is already handled by executors[0]'),
    ([], f'{CCFG}: executors: expected a non-empty list of {{"tasks": [...], "executor": {{...}}}}, got []'),
])
def test_client_config_errors(tmp_path: Path, executors: list, expected: str) -> None:
    root = make_job(tmp_path / "j", {}, {"app": {"server": SERVER_CFG,
                                                  "client": {"format_version": 2, "executors": executors}}})
    assert job_error(root) == expected


def test_client_filters_and_duplicate_ids(tmp_path: Path) -> None:
    client = dict(CLIENT_CFG, components=[{"id": "f", "path": f"{C}.Aggregator"}],
                  task_data_filters=[{"tasks": ["train"], "filters": [{"id": "f", "path": f"{C}.make_filter"}]}])
    root = make_job(tmp_path / "j", {}, {"app": {"server": SERVER_CFG, "client": client}})
    assert job_error(root) == (f'{CCFG}: task_data_filters[0].filters[0].id: duplicate id "f" '
                               "(first used at components[0])")
    client = dict(CLIENT_CFG, task_result_filters=[{"tasks": ["train"], "filters": []}])
    root = make_job(tmp_path / "k", {}, {"app": {"server": SERVER_CFG, "client": client}})
    assert job_error(root) == f"{CCFG}: task_result_filters[0].filters: expected a non-empty list of components, got []"


# ---- building components -----------------------------------------------------------------------

def test_build_server_components_and_references(job: Path) -> None:
    app, builder = server_builder(job)
    built = builder.build_components()
    assert list(built) == ["persistor"] and isinstance(built["persistor"], comp.Persistor)
    ctl = builder.build(app.server_config.workflows[0])
    assert isinstance(ctl, comp.Controller) and ctl.num_rounds == 3 and ctl.persistor_id == "persistor"
    assert builder.get("persistor") is built["persistor"] and builder.get("ctl") is ctl
    with pytest.raises(JobError) as ei:
        builder.get("nope")
    assert str(ei.value) == f'{"app/config/config_server.json"}: no component with id "nope" (known: persistor, ctl)'


def test_client_executor_gets_site_name(job: Path) -> None:
    loaded = load_job(job)
    app = loaded.client_app_for("site-1")
    builder = ComponentBuilder(app, app.client_config, {"SITE_NAME": "site-1"})
    ex = builder.build(app.client_config.executors[0].executor)
    assert ex.site == "site-1" and ex.epochs == 1


def wf(args: dict, path: str = f"{C}.Controller") -> ComponentSpec:
    return ComponentSpec("w", path, args, f"{SCFG}: workflows[0]")


@pytest.mark.parametrize("spec, expected", [
    (wf({"num_rounds": "five"}), f'{SCFG}: workflows[0].args.num_rounds: expected an integer, got "five"'),
    (wf({"num_rounds": True}), f"{SCFG}: workflows[0].args.num_rounds: expected an integer, got true"),
    (wf({"num_rounds": 1, "ratio": "x"}), f'{SCFG}: workflows[0].args.ratio: expected a number, got "x"'),
    (wf({"num_rounds": 1, "tags": {}}), f"{SCFG}: workflows[0].args.tags: expected a list or null, got {{}}"),
    (wf({"num_round": 5}), f'{SCFG}: workflows[0].args: unknown argument "num_round" (did you mean "num_rounds"? '
                           "accepted: num_rounds, persistor_id, aggregator, name, ratio, tags, options)"),
    (wf({}), f'{SCFG}: workflows[0].args: missing required argument "num_rounds"'),
    (wf({"num_rounds": "five"}, f"{C}.Checked"),
     f'{SCFG}: workflows[0].args.num_rounds: expected a positive integer, got "five"'),
    (wf({"num_rounds": 0}, f"{C}.Checked"),
     f"{SCFG}: workflows[0].args.num_rounds: expected a positive integer, got 0"),
    (wf({"mode": "max"}, f"{C}.Checked"), f'{SCFG}: workflows[0].args.mode: expected one of "avg", "sum", got "max"'),
    (wf({}, f"{C}.Explodes"), f'{SCFG}: workflows[0]: "{C}.Explodes" failed to initialise: RuntimeError: no GPU found'),
    (wf({}, "foo.Bar"), f'{SCFG}: workflows[0].path: cannot import "foo.Bar": no module named "foo"'),
    (wf({}, "tests.unit.jobdata.nope.Bar"),
     f'{SCFG}: workflows[0].path: cannot import "tests.unit.jobdata.nope.Bar": no module named '
     '"tests.unit.jobdata.nope"'),
    (wf({}, f"{C}.Controler"), f'{SCFG}: workflows[0].path: cannot import "{C}.Controler": module '
                               f'"{C}" has no attribute "Controler" (did you mean "Controller"?)'),
    (wf({}, f"{C}.NOT_CALLABLE"), f'{SCFG}: workflows[0].path: "{C}.NOT_CALLABLE" is not a class or function '
                                  "(got int)"),
    (wf({"num_rounds": 1, "persistor_id": "persistr"}),
     f'{SCFG}: workflows[0].args.persistor_id: no component with id "persistr" (known: persistor, ctl)'),
    (wf({"num_rounds": 1, "filter_ids": ["persistor", "nope"]}, f"{C}.Executor"),
     f'{SCFG}: workflows[0].args.filter_ids[1]: no component with id "nope" (known: persistor, ctl)'),
    (wf({"num_rounds": 1, "aggregator": {"path": f"{C}.Aggregator", "args": {"weight": "heavy"}}}),
     f'{SCFG}: workflows[0].args.aggregator.args.weight: expected a number, got "heavy"'),
])
def test_build_errors(job: Path, spec: ComponentSpec, expected: str) -> None:
    _, builder = server_builder(job)
    assert build_error(spec, builder) == expected


def test_build_accepts_types_inline_components_and_kwargs(job: Path) -> None:
    _, builder = server_builder(job, {"JOB_ID": "j1"})
    ctl = builder.build(wf({"num_rounds": 2, "ratio": 1, "tags": None, "job_id": "{JOB_ID}",
                            "model_ref_id": "{JOB_ID}", "persistor_id": "persistor",
                            "aggregator": {"path": f"{C}.Aggregator", "args": {"weight": 2, "exclude_vars": None}},
                            "options": {"list": [{"path": f"{C}.Persistor", "args": {"shape": [2]}}],
                                        "data": {"path": "/data/train.csv"}}}, f"{C}.Executor"))
    assert isinstance(ctl, comp.Executor) and ctl.extra["ratio"] == 1 and ctl.extra["job_id"] == "j1"
    assert isinstance(ctl.extra["aggregator"], comp.Aggregator) and ctl.extra["aggregator"].weight == 2
    assert isinstance(ctl.extra["options"]["list"][0], comp.Persistor)
    assert ctl.extra["options"]["data"] == {"path": "/data/train.csv"}


def test_component_from_custom_code(tmp_path: Path) -> None:
    custom = {"model.py": "from helpers import scale\nclass Net:\n    def __init__(self, width: int = 2):\n"
                          "        self.width = scale(width)\n",
              "helpers/__init__.py": "from .ops import scale\n", "helpers/ops.py": "def scale(x):\n    return 10 * x\n",
              "broken.py": "import numpy\nimport definitely_missing_pkg_xyz\n"}
    server = server_with(workflows=[{"path": "model.Net", "args": {"width": 3}}])
    root = make_job(tmp_path / "j", {}, {"app": {"server": server, "client": CLIENT_CFG, "custom": custom}})
    app, builder = server_builder(root)
    net = builder.build(app.server_config.workflows[0])
    assert net.width == 30 and type(net).__module__.startswith("_flshell_custom_")
    text = build_error(wf({}, "broken.Thing"), builder)
    assert text.startswith(f'{SCFG}: workflows[0].path: cannot import "broken.Thing": ModuleNotFoundError: No module '
                           "named 'definitely_missing_pkg_xyz' (at ")
    assert text.endswith("broken.py:2)")
    assert build_error(wf({}, "model.Nett"), builder) == (
        f'{SCFG}: workflows[0].path: cannot import "model.Nett": module "model" has no attribute "Nett" '
        '(did you mean "Net"?)')
    with custom_imports(app) as key:
        assert key == str(app.custom_dir.resolve())
        import model  # noqa: F401  (the proxy resolves to this job's module)
        assert model.Net is type(net)


def test_syntax_error_in_custom_module(tmp_path: Path) -> None:
    root = make_job(tmp_path / "j", {}, {"app": {"server": SERVER_CFG, "client": CLIENT_CFG,
                                                  "custom": {"bad.py": "x = 1\ndef f(:\n"}}})
    _, builder = server_builder(root)
    text = build_error(wf({}, "bad.Thing"), builder)
    assert text.startswith(f'{SCFG}: workflows[0].path: cannot import "bad.Thing": SyntaxError: ')
    assert text.endswith("bad.py:2)")


# ---- error helpers -----------------------------------------------------------------------------

def test_job_error_shape() -> None:
    e = JobError(SCFG, "workflows[0].args.num_rounds", 'expected a positive integer,\n got "five"')
    assert str(e) == f'{SCFG}: workflows[0].args.num_rounds: expected a positive integer, got "five"'
    assert (e.file, e.json_path, e.message) == (SCFG, "workflows[0].args.num_rounds",
                                                'expected a positive integer,\n got "five"')
    assert str(JobError(None, None, "plain")) == "plain"
    again = pickle.loads(pickle.dumps(e))
    assert (again.file, again.json_path, again.message, str(again)) == (e.file, e.json_path, e.message, str(e))
    assert str(JobError("meta.json", None, "m")) == "meta.json: m"


def test_arg_checks() -> None:
    assert check_positive_int("n", 3) == 3
    assert check_non_negative_number("lr", 0) == 0 and check_non_negative_number("lr", 0.5) == 0.5
    assert check_choice("m", "a", ["a", "b"]) == "a"
    for bad in (0, -1, True, 1.0, "1", None):
        with pytest.raises(ArgError):
            check_positive_int("n", bad)
    for bad in (-0.1, True, "1", float("nan"), float("inf")):
        with pytest.raises(ArgError):
            check_non_negative_number("lr", bad)
    with pytest.raises(ArgError) as ei:
        check_choice("m", 1, [True, 2])
    assert (ei.value.arg, ei.value.expected, ei.value.got) == ("m", "one of true, 2", 1)
    assert str(ei.value) == "m: expected one of true, 2, got 1"
