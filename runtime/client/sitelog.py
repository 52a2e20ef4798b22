"""Site log files for many sites in one process: buffered in memory, flushed in batches
(runtime.logfiles.LogSink), written through one logger per site or site's job."""

from __future__ import annotations

import logging
import time

from runtime.logfiles import MAX_UNSHIPPED, LogSink

__all__ = ["LogSink", "MAX_UNSHIPPED", "SinkHandler", "site_logger", "stamp"]


class SinkHandler(logging.Handler):
    """A logging handler that writes formatted records to a LogSink writer."""

    def __init__(self, write) -> None:
        super().__init__()
        self._write = write
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._write(self.format(record) + "\n")
        except Exception:  # noqa: BLE001 - logging must never break the caller
            self.handleError(record)


def site_logger(name: str, write) -> logging.Logger:
    """A logger for one site (or site+job) that writes through a sink and nowhere else."""
    logger = logging.Logger(name, logging.INFO)  # not registered globally: no leak per job
    logger.addHandler(SinkHandler(write))
    return logger


def stamp() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")
