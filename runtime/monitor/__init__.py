"""Host and per-GPU load for site heartbeats (psutil; nvidia-ml-py when present)."""

from runtime.monitor.load import gpu_load, host_load

__all__ = ["gpu_load", "host_load"]
