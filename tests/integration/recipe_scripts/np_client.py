"""Numpy site script for recipe tests: adds its site number, logs a metric, reports a score."""

import re
import sys

import runtime.client as flare
from runtime.client.tracking import SummaryWriter

crash_site = sys.argv[1] if len(sys.argv) > 1 else ""
how = sys.argv[2] if len(sys.argv) > 2 else "exit7"
flare.init()
site = flare.get_site_name()
k = float(re.search(r"(\d+)$", site).group(1))
writer = SummaryWriter()
while flare.is_running():
    model = flare.receive()
    if site == crash_site and model.current_round == 1:
        print("about to fail on purpose", file=sys.stderr)
        if how == "return":
            break  # leaves without answering the task
        sys.exit(7)
    writer.add_scalar("local_delta", k, global_step=model.current_round)
    flare.send(flare.FLModel(params={"w": model.params["w"] + k},
                             metrics={"score": float(model.params["w"].mean())}))
