"""Each site adds its number to the weights; site-1 misbehaves and adds a million."""

import re

import runtime.client as flare

flare.init()
site = flare.get_site_name()
k = int(re.search(r"(\d+)$", site).group(1)) if re.search(r"(\d+)$", site) else 1
delta = 1e6 if k == 1 else float(k)
while flare.is_running():
    model = flare.receive()
    flare.send(flare.FLModel(params={"w": model.params["w"] + delta}))
