"""npy encoding: exact round trip for every numeric dtype and shape, never pickle."""
from __future__ import annotations

import numpy as np
import pytest

from storage import InvalidValue
from storage.arrays import decode_array, encode_array


@pytest.mark.parametrize(
    "array",
    [
        np.float32([1.5, -2.0, 3.25]),
        np.arange(12, dtype=np.int64).reshape(3, 4),
        np.asfortranarray(np.arange(6, dtype=np.float64).reshape(2, 3)),
        np.array(7.0),  # 0-d
        np.zeros((2, 0, 3), dtype=np.float16),
        np.array([True, False]),
        np.array([1 + 2j], dtype=np.complex64),
        np.arange(4, dtype=">i4"),  # big-endian survives
        np.ones((1, 3, 8, 8), dtype=np.float32),
    ],
)
def test_round_trip(array: np.ndarray) -> None:
    blob, dtype, shape, digest = encode_array(array)
    assert blob.startswith(b"\x93NUMPY") and len(digest) == 64
    for decoded in (decode_array(blob), decode_array(blob, dtype, shape)):  # parsed / fast path
        np.testing.assert_array_equal(decoded, array)
        assert decoded.dtype == array.dtype and decoded.shape == array.shape
        assert decoded.flags.writeable


def test_hash_depends_on_content_dtype_and_shape() -> None:
    base = encode_array(np.float32([1, 2, 3, 4]))[3]
    assert encode_array(np.float32([1, 2, 3, 4]))[3] == base
    assert encode_array(np.float32([1, 2, 3, 5]))[3] != base
    assert encode_array(np.float64([1, 2, 3, 4]))[3] != base
    assert encode_array(np.float32([[1, 2], [3, 4]]))[3] != base


def test_refuses_object_arrays_and_non_finite_designs() -> None:
    with pytest.raises(InvalidValue, match="design: dtype object is not numeric"):
        encode_array(np.array([{"a": 1}], dtype=object), field="design")
    with pytest.raises(InvalidValue, match="design: contains NaN or infinite values"):
        encode_array(np.array([0.0, np.inf]), field="design")
    with pytest.raises(ValueError, match="allow_pickle"):
        # what a pickled payload would need: refused by the decoder
        import io
        buffer = io.BytesIO()
        np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)
        decode_array(buffer.getvalue())
