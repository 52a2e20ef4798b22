"""Host and per-GPU load for site heartbeats (psutil; nvidia-ml-py when present)."""

from runtime.monitor.load import gpu_load, gpu_status, host_load, job_for_pid, load_report, use_nvml

__all__ = ["gpu_load", "gpu_status", "host_load", "job_for_pid", "load_report", "use_nvml"]
