"""Each site reports who it thinks it is, and how many sites were inside a task with it.

- its number k (from its name) as the metric site_no, and k added to every weight;
- its system_info() and, after a short sleep inside each task, its name again, in its log;
- "inside=I taken=T": I sites (itself included) were between receive() and send() when it took
  the task, T tasks were taken by all sites so far (tally.py is shared by the job's sites).

site-1 and site-2 wait for each other inside their first task (tally.pair), so at least those
two are inside a task at once, and the sleep keeps more overlapping: a site context leaking
between threads shows up as a wrong name, a broken -t gate as too many sites inside. (It needs
site-1 and site-2 and, with -t, at least 2 threads.) In worker processes (`--processes`, `-gpu`)
sites share no module state, so there is no meeting; each site logs its process instead: pid,
worker and CUDA_VISIBLE_DEVICES.
"""

import os
import re
import time

import numpy as np
import tally

import runtime.client as flare

flare.init()
site = flare.get_site_name()
number = int(re.search(r"(\d+)$", site).group(1))
info = flare.system_info()
print(f"system_info site_name={info['site_name']} gpu={info.get('gpu')}")
in_worker = info.get("worker") is not None
if in_worker:
    print(f"process pid={os.getpid()} worker={info['worker']} "
          f"cuda_visible={os.environ.get('CUDA_VISIBLE_DEVICES')} omp={os.environ.get('OMP_NUM_THREADS')}")
while flare.is_running():
    model = flare.receive()
    inside, taken = tally.enter()
    try:
        if site in ("site-1", "site-2") and model.current_round == 0 and not in_worker:
            tally.pair.wait()
        time.sleep(0.05)
        print(f"round {model.current_round}: name_now={flare.get_site_name()} inside={inside} taken={taken}")
        weights = np.asarray(model.params["weights"], dtype=np.float64)
        result = flare.FLModel(
            params={"weights": weights + number},
            metrics={"site_no": float(number)},
            meta={"NUM_STEPS_CURRENT_ROUND": 1},
        )
    finally:
        tally.leave()
    flare.send(result)
