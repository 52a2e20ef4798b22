"""A site's resources and the jobs' requests for them: GPUs, who holds which, where a job fits."""

from runtime.resources.gpus import (
    ALL_SITES,
    GIB,
    Gpu,
    GpuAllocator,
    GpuInventory,
    GpuRequest,
    GpuSpecError,
    NotPlaceable,
    ResourceSpecError,
    choose_gpus,
    detect_gpus,
    gpu_requests,
    parse_resource_spec,
    request_for,
)
from runtime.resources.placement import GpuReservations, SiteGpus, place

__all__ = [
    "ALL_SITES", "GIB", "Gpu", "GpuAllocator", "GpuInventory", "GpuRequest", "GpuReservations", "GpuSpecError",
    "NotPlaceable", "ResourceSpecError", "SiteGpus", "choose_gpus", "detect_gpus", "gpu_requests",
    "parse_resource_spec", "place", "request_for",
]
