"""Every site adds 1 and reports metrics whose names hold square brackets: "loss[val]", "acc[/top1]".

Brackets are ordinary characters in a metric name, but rich reads "[...]" in a string it prints
as markup: a printer that does not escape drops "[val]", and raises MarkupError on "[/top1]".
"""

import numpy as np

import runtime.client as flare

flare.init()
while flare.is_running():
    model = flare.receive()
    weights = np.asarray(model.params["weights"], dtype=np.float64)
    flare.send(
        flare.FLModel(
            params={"weights": weights + 1.0},
            metrics={"loss[val]": 0.5, "acc[/top1]": 0.25},
            meta={"NUM_STEPS_CURRENT_ROUND": 1},
        )
    )
