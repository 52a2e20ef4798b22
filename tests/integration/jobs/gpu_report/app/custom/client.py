"""Reports the GPUs its site gave it, then holds them until the test says go.

In GATES (a folder the test names in script_args) it writes <job id>.json with its process's
CUDA_VISIBLE_DEVICES, CUDA_DEVICE_ORDER and flare.system_info(), then waits inside its task
for GATES/<job id>.go: "done" trains and sends the result, "kill" SIGKILLs the job's process
(what a crash in native code looks like: no cleanup, no report from the script).
"""

import argparse
import json
import os
import signal
import time
from pathlib import Path

import numpy as np

import runtime.client as flare

parser = argparse.ArgumentParser()
parser.add_argument("--gates", required=True)
gates = Path(parser.parse_args().gates)

flare.init()
job_id = flare.get_job_id()
report = {"CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES"),
          "CUDA_DEVICE_ORDER": os.environ.get("CUDA_DEVICE_ORDER"),
          "system_info": flare.system_info(), "pid": os.getpid()}
(gates / f"{job_id}.tmp").write_text(json.dumps(report))
(gates / f"{job_id}.tmp").rename(gates / f"{job_id}.json")  # seen whole or not at all

go = gates / f"{job_id}.go"
while flare.is_running():
    model = flare.receive()
    if model is None:
        break
    deadline = time.monotonic() + 120  # a test that never says go fails, it does not hang
    while not go.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    if go.exists() and go.read_text() == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    weights = np.asarray(model.params["weights"], dtype=np.float64)
    flare.send(flare.FLModel(params={"weights": weights + 1.0}, meta={"NUM_STEPS_CURRENT_ROUND": 1}))
