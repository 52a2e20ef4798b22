"""PyTorch glue for the wire codec. torch is optional: nothing here imports it at import time.

A tensor can only exist once torch is imported, so tensors are recognised through sys.modules;
torch itself is loaded (with importlib, never a static import) only when torch output is asked
for.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import Any

import numpy as np

# torch dtypes sent as kind "torch"; the wire name is torch's name without "torch."
TORCH_WIRE_DTYPES = frozenset({"bool", "uint8", "int8", "int16", "int32", "int64", "float16",
                               "bfloat16", "float32", "float64", "complex64", "complex128"})


def load(required: bool = False, why: str = "torch output") -> ModuleType | None:
    """The torch module; None when it cannot be imported, or ImportError if required."""
    try:
        return importlib.import_module("torch")
    except ImportError as e:
        if required:
            raise ImportError(f"{why} needs PyTorch, which cannot be imported ({e})") from e
        return None


def is_tensor(value: Any) -> bool:
    """True for torch tensors and their subclasses (nn.Parameter, ...), without importing torch."""
    torch = sys.modules.get("torch")
    tensor_type = getattr(torch, "Tensor", None)
    return tensor_type is not None and isinstance(value, tensor_type)


def problem(t: Any) -> str | None:
    """Why tensor t cannot be sent, or None when it can."""
    name = wire_dtype(t)
    if name is None:
        return (f"torch dtype {t.dtype} cannot be sent (supported: "
                f"{', '.join(sorted(TORCH_WIRE_DTYPES))})")
    if str(t.layout) != "torch.strided":
        return f"a tensor with layout {t.layout} cannot be sent; use .to_dense()"
    if t.device.type == "meta":
        return "a tensor on the meta device has no data to send"
    return None


def wire_dtype(t: Any) -> str | None:
    """The wire dtype name of tensor t, or None when its dtype cannot be sent."""
    name = str(t.dtype).removeprefix("torch.")
    return name if name in TORCH_WIRE_DTYPES else None


def to_numpy(t: Any) -> np.ndarray:
    """A numpy array with t's values: a view of a CPU tensor, else a CPU copy; bfloat16 as uint16
    bits (bit-exact, no float32 detour)."""
    torch = sys.modules["torch"]
    t = t.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    t = t.resolve_conj().resolve_neg()  # lazy conj()/neg views have no plain numpy form
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(np.uint16)
    return t.numpy()


def from_numpy(arr: np.ndarray, dtype: str, copy: bool = False) -> Any:
    """A CPU tensor from a native-endian array (for dtype "bfloat16": its uint16 bits).

    It shares the array's memory unless copy, or unless the array is read-only, misaligned or
    has negative strides (torch has no such tensors), in which case the tensor owns a copy.
    Raises TypeError when torch has no dtype for the array.
    """
    torch = load(required=True)
    if copy or not (arr.flags.writeable and arr.flags.aligned) or any(s < 0 for s in arr.strides):
        arr = np.array(arr, order="C", copy=True)
    if dtype == "bfloat16":
        return torch.from_numpy(arr.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(arr)
