"""FedAvg refuses to start without an initial model (it used to send the sites an empty one)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from runtime.jobs import JobError, load_job
from runtime.jobs.errors import ArgError
from runtime.server.job_runner import build_server_app

HELLO = Path(__file__).resolve().parents[2] / "examples" / "hello-numpy"


def test_a_job_whose_fedavg_has_no_initial_model_is_refused_naming_the_field(tmp_path):
    job = tmp_path / "job"
    shutil.copytree(HELLO, job)
    cfg_path = job / "app" / "config" / "config_server.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["workflows"][0]["args"].pop("persistor_id")
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(JobError) as e:
        build_server_app(load_job(job), "job-1")
    text = str(e.value)
    assert "config_server.json" in text and "workflows[0].args.persistor_id" in text, text
    assert "empty model" in text


def test_recipes_need_an_initial_model():
    from runtime.recipes import NumpyFedAvgRecipe

    script = str(HELLO / "app" / "custom" / "client.py")
    with pytest.raises(ArgError, match="initial_model.*round 1 sends"):
        NumpyFedAvgRecipe(name="x", min_clients=2, num_rounds=1, train_script=script)
    NumpyFedAvgRecipe(name="x", min_clients=2, num_rounds=1, train_script=script,
                      initial_model={"w": np.zeros(2)})
