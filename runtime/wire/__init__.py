"""Wire formats: params and FLModel streams (JSON header + raw buffers; never pickle)."""

from runtime.wire.codec import (
    DEFAULT_CHUNK_SIZE,
    MAGIC,
    MAX_ENTRIES,
    MAX_HEADER_BYTES,
    ModelAssembler,
    ParamsAssembler,
    WireError,
    decode_model,
    decode_params,
    encode_model,
    encode_params,
    encoded_size,
    iter_chunks,
    iter_model_chunks,
)

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "MAGIC",
    "MAX_ENTRIES",
    "MAX_HEADER_BYTES",
    "ModelAssembler",
    "ParamsAssembler",
    "WireError",
    "decode_model",
    "decode_params",
    "encode_model",
    "encode_params",
    "encoded_size",
    "iter_chunks",
    "iter_model_chunks",
]
