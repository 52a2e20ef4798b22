"""Sites: the Client API (`import runtime.client as flare`), the site agent and executors."""

from runtime.client.api import (
    get_job_id,
    get_site_name,
    get_task_name,
    init,
    is_evaluate,
    is_running,
    is_submit_model,
    is_train,
    log,
    receive,
    send,
    system_info,
)
from runtime.model import FLModel, MetaKey, ParamsType

__all__ = [
    "FLModel",
    "MetaKey",
    "ParamsType",
    "get_job_id",
    "get_site_name",
    "get_task_name",
    "init",
    "is_evaluate",
    "is_running",
    "is_submit_model",
    "is_train",
    "log",
    "receive",
    "send",
    "system_info",
]
