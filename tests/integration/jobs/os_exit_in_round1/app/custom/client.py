"""site-1 ends its whole process with os._exit(3) in the first round (no exception, no cleanup:
what a crash in native code or a hard exit looks like); the other sites train normally."""

import os

import numpy as np

import runtime.client as flare

flare.init()
site = flare.get_site_name()
while flare.is_running():
    model = flare.receive()
    if site == "site-1" and model.current_round == 0:
        print(f"{site}: exiting the process with code 3", flush=True)
        os._exit(3)
    weights = np.asarray(model.params["weights"], dtype=np.float64)
    flare.send(flare.FLModel(params={"weights": weights + 1.0}, meta={"NUM_STEPS_CURRENT_ROUND": 1}))
