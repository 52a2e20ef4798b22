"""Small component classes that test job configs reference by dotted path."""
from __future__ import annotations

from runtime.jobs import check_choice, check_positive_int

EVENTS: list[str] = []  # custom modules of test jobs append here when they are imported


class Controller:
    def __init__(self, num_rounds: int, persistor_id: str = "", aggregator=None, name: str = "ctl",
                 ratio: float = 1.0, tags: list | None = None, options: dict | None = None) -> None:
        self.num_rounds = num_rounds
        self.persistor_id = persistor_id
        self.aggregator = aggregator
        self.name = name
        self.ratio = ratio
        self.tags = tags
        self.options = options


class Checked:
    def __init__(self, num_rounds=1, mode="avg") -> None:
        self.num_rounds = check_positive_int("num_rounds", num_rounds)
        self.mode = check_choice("mode", mode, ["avg", "sum"])


class Persistor:
    def __init__(self, path: str = "model.npz", shape: list | None = None) -> None:
        self.path = path
        self.shape = shape


class Aggregator:
    def __init__(self, weight: float = 1.0, exclude_vars: str | None = None) -> None:
        self.weight = weight
        self.exclude_vars = exclude_vars


class Executor:
    def __init__(self, script: str = "client.py", site: str = "", epochs: int = 1, **extra) -> None:
        self.script = script
        self.site = site
        self.epochs = epochs
        self.extra = extra


class Explodes:
    def __init__(self) -> None:
        raise RuntimeError("no GPU found")


def make_filter(strength: float = 0.5) -> dict:
    return {"strength": strength}


NOT_CALLABLE = 42


class Gate:
    """entered: a constructor is waiting on it; release: let it go on."""

    def __init__(self) -> None:
        import threading

        self.entered, self.release = threading.Event(), threading.Event()


GATES: dict[str, Gate] = {}  # name -> gate, set up by a test before the job is built


class GatedComponent:
    """A server component whose constructor waits for its test (a slow constructor)."""

    def __init__(self, gate: str) -> None:
        GATES[gate].entered.set()
        if not GATES[gate].release.wait(60):
            raise TimeoutError(f"gate {gate} was never released")
