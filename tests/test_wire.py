"""The value codec: the C scalar path writes exactly what the Python codec
writes, reads back every width msgpack allows, and hands everything else to
Python (same results, same errors)."""

from __future__ import annotations

import math

import msgpack
import pytest

from mpgo._transport import _wire

sp = pytest.importorskip("mpgo._speedups")
if not hasattr(sp, "wire_encode"):
    pytest.skip("mpgo._speedups has no codec", allow_module_level=True)

EDGES = [
    0, 1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 1,
    -1, -32, -33, -128, -129, -32768, -32769, -2**31, -2**31 - 1, -2**63,
    0.0, -0.0, -1.5, math.inf, -math.inf, 1e300, 5e-324,
    None, True, False,
    "", "a" * 31, "a" * 32, "é" * 200, "x" * 70000, "日本",
    b"", b"x" * 255, b"x" * 256, b"y" * 70000,
]


@pytest.mark.parametrize("v", EDGES, ids=lambda v: f"{type(v).__name__}:{repr(v)[:12]}")
def test_c_encoder_writes_the_python_encoders_bytes_and_reads_them_back(v):
    b = sp.wire_encode(v)
    assert b == _wire.encode_py(v)
    out = sp.wire_decode(b)
    assert type(out) is type(v) and out == v


def test_nan_keeps_its_type():
    out = sp.wire_decode(sp.wire_encode(math.nan))
    assert type(out) is float and math.isnan(out)


@pytest.mark.parametrize("v", [2**64, -2**63 - 1, (1, 2), [1, "a", (2,)], {"a": 1, 2: b"x"},
                               1.5 + 2j, bytearray(b"ab"), frozenset({1}), "x" * (2 << 20)],
                         ids=lambda v: type(v).__name__)
def test_what_c_does_not_handle_goes_through_python_and_keeps_its_type(v):
    out = sp.wire_decode(sp.wire_encode(v))
    assert type(out) is type(v) and out == v


@pytest.mark.parametrize("b", [b"\xca\x3f\xc0\x00\x00", b"\xd0\xfb", b"\xd1\xff\xfe",
                               b"\xcd\x00\x01", b"\xd9\x01a", b"\xc4\x01x"])
def test_any_width_another_encoder_may_choose_decodes_as_msgpack_does(b):
    assert sp.wire_decode(b) == msgpack.unpackb(b)


@pytest.mark.parametrize("b", [b"\xa1\xff", b"\xc4\x05", b"\x01\x02", b""])
def test_malformed_bytes_raise_what_the_python_decoder_raises(b):
    with pytest.raises(Exception) as c_err:
        sp.wire_decode(b)
    with pytest.raises(Exception) as py_err:
        _wire.decode_py(b)
    assert type(c_err.value) is type(py_err.value)


def test_a_string_msgpack_cannot_encode_fails_as_before():
    with pytest.raises(UnicodeEncodeError):
        sp.wire_encode("x\ud800")


def test_an_unpicklable_value_raises_typeerror():
    import threading

    with pytest.raises(TypeError, match="cannot be pickled"):
        sp.wire_encode(threading.Lock())
