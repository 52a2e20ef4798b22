"""What a controller sees of its job: the contract between workflows and whoever runs them (the
server's JobRunner gives a JobContext; a test may give anything of this shape)."""

from __future__ import annotations

import logging
import threading
from typing import Any, Protocol

from runtime.model import FLModel
from runtime.workflows.tasks import GroupOutcome, TaskDispatcher, TaskGroup


class ControllerContext(Protocol):
    job_id: str
    job: Any  # runtime.jobs.Job: min_clients, mandatory_clients, apps
    engine: TaskDispatcher
    components: Any  # the server app's ComponentBuilder: get(component_id)
    workspace: Any  # where models and round records go: save_model(model, name)
    logger: logging.Logger
    abort_event: threading.Event
    sites: list[str]  # the sites ready for this job
    current_group: TaskGroup | None
    last_outcome: GroupOutcome | None

    def round_started(self, current_round: int, total_rounds: int, targets: list[str]) -> None: ...

    def round_completed(self, current_round: int, metrics: dict[str, Any]) -> None: ...

    def take_resume_model(self) -> FLModel | None: ...

    def take_resume_state(self) -> FLModel | None: ...
