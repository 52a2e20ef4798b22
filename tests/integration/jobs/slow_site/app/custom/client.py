"""hello-numpy's arithmetic (site-k adds k each round), except that the site named by
--slow-site ("all": every site) stalls in the first round: it writes `stalled` into the job's
folder on the site (system_info()["workspace"]; never the working folder, which for an
in-process site is the caller's), then sleeps --sleep seconds. Tests kill or abort it there."""

import argparse
import re
import time
from pathlib import Path

import numpy as np

import runtime.client as flare

parser = argparse.ArgumentParser()
parser.add_argument("--slow-site", default="site-3")
parser.add_argument("--sleep", type=float, default=60.0)
args = parser.parse_args()

flare.init()
site = flare.get_site_name()
k = int(re.search(r"(\d+)$", site).group(1))
while flare.is_running():
    model = flare.receive()
    if model.current_round == 0 and args.slow_site in (site, "all"):
        Path(flare.system_info()["workspace"], "stalled").write_text(f"{site}\n")
        print(f"{site}: stalling {args.sleep:g}s in round 1", flush=True)
        time.sleep(args.sleep)
    weights = np.asarray(model.params["weights"], dtype=np.float64)
    print(f"{site}: round {model.current_round + 1}/{model.total_rounds}", flush=True)
    flare.send(flare.FLModel(params={"weights": weights + k}, meta={"NUM_STEPS_CURRENT_ROUND": 1}))
