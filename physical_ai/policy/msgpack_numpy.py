"""msgpack with numpy arrays, wire-compatible with the openpi policy-server protocol.

Arrays travel as maps {b"__ndarray__": True, b"data": raw bytes, b"dtype": dtype.str, b"shape": shape};
numpy scalars as {b"__npgeneric__": True, b"data": item, b"dtype": dtype.str}. Object, void and complex dtypes are
refused (they cannot be rebuilt safely). Nothing here executes code from the peer, unlike pickle.
"""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np


def _encode(obj: Any) -> Any:
    if isinstance(obj, (np.ndarray, np.generic)) and obj.dtype.kind in ("V", "O", "c"):
        raise ValueError(f"msgpack_numpy: unsupported dtype {obj.dtype}")
    if isinstance(obj, np.ndarray):
        return {b"__ndarray__": True, b"data": np.ascontiguousarray(obj).tobytes(), b"dtype": obj.dtype.str,
                b"shape": list(obj.shape)}
    if isinstance(obj, np.generic):
        return {b"__npgeneric__": True, b"data": obj.item(), b"dtype": obj.dtype.str}
    return obj


def _decode(obj: dict) -> Any:
    if b"__ndarray__" in obj:
        dtype = np.dtype(obj[b"dtype"])
        if dtype.kind in ("V", "O", "c"):
            raise ValueError(f"msgpack_numpy: unsupported dtype {dtype}")
        return np.frombuffer(obj[b"data"], dtype=dtype).reshape(obj[b"shape"])
    if b"__npgeneric__" in obj:
        return np.dtype(obj[b"dtype"]).type(obj[b"data"])
    return obj


def packb(obj: Any) -> bytes:
    """Serialise `obj` (dicts, lists, str, numbers, numpy arrays/scalars)."""
    return msgpack.packb(obj, default=_encode, use_bin_type=True)


def unpackb(data: bytes) -> Any:
    """Deserialise bytes produced by `packb` (or by openpi's msgpack_numpy)."""
    return msgpack.unpackb(data, object_hook=_decode, raw=False, strict_map_key=False)
