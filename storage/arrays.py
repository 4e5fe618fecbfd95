"""Arrays in and out of the database as npy bytes (``allow_pickle=False``), with a content hash.

`hash = sha256(npy bytes)`: the npy header carries dtype and shape, so equal hashes mean equal
arrays. Object arrays are refused (they would need pickle); so are NaN / infinite designs.

>>> blob, dtype, shape, digest = encode_array(np.zeros((2, 3), dtype=np.float32))
>>> decode_array(blob).shape
(2, 3)
"""
from __future__ import annotations

import hashlib
import io
from typing import Any

import numpy as np

from storage.errors import InvalidValue


def to_numpy(value: Any, *, field: str) -> np.ndarray:
    """``value`` (a numpy array, a CPU tensor, a nested list) as a numeric numpy array."""
    if hasattr(value, "detach"):  # a torch tensor: storage must not import torch
        value = value.detach().cpu().numpy()
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise InvalidValue(f"{field}: cannot convert {type(value).__name__} to an array ({exc})") from exc
    if array.dtype.hasobject or array.dtype.kind not in "biufc":
        raise InvalidValue(
            f"{field}: dtype {array.dtype} is not numeric; designs and features are stored as "
            f"npy without pickle, so pass a numeric array"
        )
    return array


def encode_array(
    value: Any, *, field: str = "array", finite: bool = True
) -> tuple[bytes, str, list[int], str]:
    """Encode to ``(npy bytes, dtype, shape, sha256 hex)``; refuses non-finite values if asked."""
    array = np.asarray(to_numpy(value, field=field), order="C")  # C order: see decode fast path
    if finite and array.dtype.kind in "fc" and not np.isfinite(array).all():
        raise InvalidValue(f"{field}: contains NaN or infinite values; a design must be finite")
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    blob = buffer.getvalue()
    return blob, array.dtype.str, list(array.shape), hashlib.sha256(blob).hexdigest()


def decode_array(blob: bytes, dtype: str | None = None, shape: list[int] | None = None) -> np.ndarray:
    """Decode npy bytes written by :func:`encode_array` (never unpickles).

    With the ``dtype`` and ``shape`` stored beside the bytes, the npy header is skipped instead
    of parsed (parsing it is ~100 µs; this is what keeps a 10,000-query history load fast).
    """
    if dtype is None or shape is None or blob[:6] != b"\x93NUMPY":
        return np.load(io.BytesIO(blob), allow_pickle=False)
    if blob[6] == 1:  # npy 1.0: 2-byte header length; 2.0 / 3.0: 4-byte
        offset = 10 + int.from_bytes(blob[8:10], "little")
    else:
        offset = 12 + int.from_bytes(blob[8:12], "little")
    array = np.frombuffer(blob, dtype=np.dtype(dtype), offset=offset)
    return array.reshape(shape).copy()  # a writable array that owns its memory
