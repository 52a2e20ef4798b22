"""In-memory conversion of params dicts between numpy and torch (e.g. for a server's
`server_expected_format`). torch is only loaded when a tensor is present or torch is asked for.

bfloat16: numpy itself has no bfloat16. The numpy side holds it either as ml_dtypes.bfloat16
(when that package is installed) or widened to float32; without ml_dtypes, widening to float32 is
the only option that keeps the values (every bfloat16 is exactly a float32, so converting back
with `params_to_torch` and `.to(torch.bfloat16)` restores the same bits, NaN payloads aside).
"uint16" keeps the raw bits instead, which are not values: no arithmetic on them.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from runtime.wire import torch_support
from runtime.wire.codec import WireError, bfloat16_from_bits

ParamsFormat = Literal["numpy", "torch", "mixed", "empty"]
_BF16_MODES = ("float32", "ml_dtypes", "uint16", "auto")


def _q(name: Any) -> str:
    return f'params["{name}"]' if isinstance(name, str) else f"params[{name!r}]"


def _items(params: Any) -> Any:
    if not isinstance(params, dict):
        raise TypeError(f"params: expected a dict, got {type(params).__name__}")
    return params.items()


def params_format(params: dict[str, Any] | None) -> ParamsFormat:
    """"torch" when every value is a torch tensor, "numpy" when none is (numpy arrays and
    numbers), "mixed" for both, "empty" for {} or None."""
    if params is None or (isinstance(params, dict) and not params):
        return "empty"
    kinds = {torch_support.is_tensor(v) for _, v in _items(params)}
    return "mixed" if len(kinds) == 2 else "torch" if True in kinds else "numpy"


def params_to_numpy(params: dict[str, Any], bfloat16: str = "float32",
                    copy: bool = False) -> dict[str, Any]:
    """params with every torch tensor turned into a numpy array (detached, on the CPU, bit for
    bit); other values are kept as they are.

    bfloat16 tensors become float32 ("float32", default: exact widening), ml_dtypes.bfloat16
    ("ml_dtypes"; needs that package), uint16 raw bits ("uint16") or ml_dtypes when installed,
    else float32 ("auto"). Arrays share a CPU tensor's memory, as Tensor.numpy() does, unless
    copy (copy also copies the numpy values).
    """
    if bfloat16 not in _BF16_MODES:
        raise ValueError(f"bfloat16 must be one of {', '.join(map(repr, _BF16_MODES))}, "
                         f"got {bfloat16!r}")
    if bfloat16 in ("ml_dtypes", "auto"):
        try:
            import ml_dtypes  # noqa: F401
            bfloat16 = "ml_dtypes"
        except ImportError:
            if bfloat16 == "ml_dtypes":
                raise
            bfloat16 = "float32"
    out: dict[str, Any] = {}
    for name, v in _items(params):
        if not torch_support.is_tensor(v):
            out[name] = v.copy() if copy and isinstance(v, np.ndarray) else v
            continue
        why = torch_support.problem(v)
        if why:
            raise WireError(f"{_q(name)}: {why}")
        arr = torch_support.to_numpy(v)  # shares a CPU tensor's memory
        fresh = v.device.type != "cpu"
        if torch_support.wire_dtype(v) == "bfloat16":
            arr = bfloat16_from_bits(arr, bfloat16)
            fresh = fresh or bfloat16 == "float32"
        out[name] = arr.copy() if copy and not fresh else arr
    return out


def params_to_torch(params: dict[str, Any], copy: bool = False) -> dict[str, Any]:
    """params with every value as a CPU torch tensor (needs torch); tensors are kept as they are.

    numpy arrays share their memory with the tensor unless copy, or unless they are read-only,
    misaligned or have negative strides; ml_dtypes.bfloat16 arrays become torch.bfloat16 bit for
    bit; numbers and lists become tensors via numpy. With copy, tensors are cloned (detached).
    """
    torch_support.load(required=True, why="params_to_torch")
    out: dict[str, Any] = {}
    for name, v in _items(params):
        if torch_support.is_tensor(v):
            out[name] = v.detach().clone() if copy else v
            continue
        arr = np.asarray(v)
        fresh = isinstance(v, (bool, int, float, complex, list, tuple))  # arr is a new array
        if not arr.dtype.isnative:
            arr, fresh = arr.astype(arr.dtype.newbyteorder("=")), True
        dt = "bfloat16" if arr.dtype.name == "bfloat16" and arr.dtype.itemsize == 2 else \
            arr.dtype.name
        try:
            out[name] = torch_support.from_numpy(arr, dt, copy=copy and not fresh)
        except TypeError as e:
            raise WireError(f"{_q(name)}: {type(v).__name__} of dtype {arr.dtype} has no torch "
                            f"equivalent ({e})") from None
    return out


def convert_params(model: Any, fmt: str) -> Any:
    """The same FLModel with its params as numpy arrays ("numpy") or torch tensors ("torch")."""
    if not model.params:
        return model
    model.params = params_to_torch(model.params) if fmt == "torch" else \
        params_to_numpy(model.params, bfloat16="auto")
    return model
