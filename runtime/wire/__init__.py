"""Wire formats: params and FLModel streams (JSON header + raw buffers; never pickle).

Params may hold numpy arrays or torch tensors; torch is optional and never imported here.
"""

from runtime.wire.codec import (
    DEFAULT_CHUNK_SIZE,
    MAGIC,
    MAX_ENTRIES,
    MAX_HEADER_BYTES,
    BFloat16Mode,
    DecodeTarget,
    WireError,
    WireLimitError,
    decode_model,
    decode_params,
    encode_model,
    encode_params,
    encoded_size,
    iter_chunks,
    iter_model_chunks,
)
from runtime.wire.assembler import ModelAssembler, ParamsAssembler
from runtime.wire.convert import ParamsFormat, params_format, params_to_numpy, params_to_torch

__all__ = [
    "BFloat16Mode",
    "DEFAULT_CHUNK_SIZE",
    "DecodeTarget",
    "MAGIC",
    "MAX_ENTRIES",
    "MAX_HEADER_BYTES",
    "ModelAssembler",
    "ParamsAssembler",
    "ParamsFormat",
    "WireError",
    "WireLimitError",
    "decode_model",
    "decode_params",
    "encode_model",
    "encode_params",
    "encoded_size",
    "iter_chunks",
    "iter_model_chunks",
    "params_format",
    "params_to_numpy",
    "params_to_torch",
]
