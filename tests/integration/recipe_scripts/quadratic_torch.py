"""The quadratic test problem (tests/integration/jobs/quadratic) as a torch site: the model is one
float64 parameter `w`, trained by torch.optim.SGD; FedProx's term and SCAFFOLD's correction come
from runtime.client.algorithms' torch helpers."""

import torch

import runtime.client as flare
from runtime.client.algorithms import ScaffoldHelper, fedprox_loss
from runtime.model import FLModel

SITES = {1: ([1.0, 0.0, -1.0], 1), 2: ([3.0, 2.0, 0.0], 4), 3: ([-2.0, 1.0, 2.0], 9),
         4: ([0.5, -3.0, 1.0], 2), 5: ([2.0, 2.0, 2.0], 6)}
LR = 0.05


class Point(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))


flare.init()
k = int(flare.get_site_name().split("-")[-1])
t = torch.tensor(SITES[k][0], dtype=torch.float64)
steps = SITES[k][1]
net = Point()
scaffold = ScaffoldHelper()
while flare.is_running():
    model = flare.receive()
    if model is None:
        break
    net.load_state_dict(model.params)
    received = {name: p.detach().clone() for name, p in net.named_parameters()}
    mu = float(model.meta.get("fedprox_mu", 0.0))
    use_scaffold = "scaffold_c_global" in model.meta
    if use_scaffold:
        scaffold.start_round(model)
    opt = torch.optim.SGD(net.parameters(), lr=LR)
    for _ in range(steps):
        opt.zero_grad()
        loss = 0.5 * ((net.w - t) ** 2).sum() + fedprox_loss(net, received, mu)
        loss.backward()
        opt.step()
        if use_scaffold:
            scaffold.correct_torch(net, LR)
    params = {k: v.detach() for k, v in net.state_dict().items()}
    meta = scaffold.end_round(params, LR, steps) if use_scaffold else {"NUM_STEPS_CURRENT_ROUND": steps}
    flare.send(FLModel(params=params, meta=meta))
