"""FLModel: what travels between a controller and a site's training code."""

from __future__ import annotations

import copy
import enum
from dataclasses import dataclass, field
from typing import Any


class ParamsType(str, enum.Enum):
    """Whether `FLModel.params` holds whole weights or the change since the received model."""

    FULL = "FULL"
    DIFF = "DIFF"

    def __str__(self) -> str:
        return self.value


class MetaKey:
    """Well-known keys of `FLModel.meta` (NVFlare's names, so user code ports unchanged)."""

    NUM_STEPS_CURRENT_ROUND = "NUM_STEPS_CURRENT_ROUND"
    CURRENT_ROUND = "current_round"
    TOTAL_ROUNDS = "total_rounds"
    SITE_NAME = "site_name"
    JOB_ID = "job_id"


@dataclass
class FLModel:
    """Model weights plus what a round needs to know about them.

    `params` is a dict of arrays (numpy, or torch tensors on a torch site); `metrics`, `meta`
    and `optimizer_params` must be JSON-compatible because they cross process boundaries.
    """

    params: dict[str, Any] | None = None
    params_type: ParamsType | None = ParamsType.FULL
    metrics: dict[str, Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    current_round: int | None = None
    total_rounds: int | None = None
    start_round: int | None = 0
    optimizer_params: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.params_type is not None and not isinstance(self.params_type, ParamsType):
            try:
                self.params_type = ParamsType(str(self.params_type).upper())
            except ValueError:
                raise ValueError(
                    f"FLModel.params_type: expected FULL or DIFF, got {self.params_type!r}"
                ) from None
        if self.meta is None:
            self.meta = {}
        if self.params is not None and not isinstance(self.params, dict):
            raise TypeError(
                f"FLModel.params: expected a dict of arrays, got {type(self.params).__name__}"
            )

    def summary(self) -> str:
        n = len(self.params or {})
        return (
            f"FLModel(params={n} arrays, type={self.params_type}, round={self.current_round}/"
            f"{self.total_rounds}, metrics={self.metrics})"
        )

    def copy_meta(self) -> "FLModel":
        """A model sharing `params` (not copied) with its own copies of the small fields."""
        return FLModel(
            params=self.params,
            params_type=self.params_type,
            metrics=copy.deepcopy(self.metrics),
            meta=copy.deepcopy(self.meta),
            current_round=self.current_round,
            total_rounds=self.total_rounds,
            start_round=self.start_round,
            optimizer_params=copy.deepcopy(self.optimizer_params),
        )
