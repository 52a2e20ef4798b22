"""Job folders: loading and validation (meta.json, server/client configs), component building, custom code."""
from .components import ComponentBuilder, is_inline_component
from .configs import BUILTIN_NAMES
from .custom_import import (app_key, bind_thread, current_job_key, custom_imports, job_import_context,
                            register_custom_dir, unbind_thread, unregister)
from .errors import ArgError, JobError, check_choice, check_non_negative_number, check_positive_int
from .loader import load_job
from .spec import (ALL_SITES, SERVER, App, ClientConfig, ComponentSpec, ExecutorSpec, FilterSpec, Job,
                   ServerConfig)
from .variables import SYSTEM_VARIABLES, substitute

__all__ = [
    "ALL_SITES", "App", "ArgError", "BUILTIN_NAMES", "ClientConfig", "ComponentBuilder", "ComponentSpec",
    "ExecutorSpec", "FilterSpec", "Job", "JobError", "SERVER", "SYSTEM_VARIABLES", "ServerConfig", "app_key",
    "bind_thread", "check_choice", "check_non_negative_number", "check_positive_int", "current_job_key",
    "custom_imports", "is_inline_component", "job_import_context", "load_job", "register_custom_dir",
    "substitute", "unbind_thread", "unregister",
]
