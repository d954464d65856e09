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


# -- messages: token + msgpack([src, run, frame...]) ---------------------------

TOKEN = bytes(range(16))
FRAMES = [
    [[31, 12345, 0, False], [30, 7, 12346, b"\x2a"]],
    [[1, None, True, 1.5, -1.0, *[v for v in EDGES if type(v) is int]]],
    [[v for v in EDGES if type(v) in (str, bytes)]],
    [[list(range(15)), list(range(16)), list(range(70000)), [], {}]],
    [[{"a": 1, 2: [3, b"x"], None: {"n": [1.25]}}, {i: i for i in range(16)},
      {i: str(i) for i in range(70000)}]],
    [[[[[[[]]]]]]],
]


@pytest.mark.skipif(not hasattr(sp, "wire_pack"), reason="no C message codec")
@pytest.mark.parametrize("frames", FRAMES, ids=["hop", "scalars", "str-bytes", "arrays", "maps",
                                                "nested"])
@pytest.mark.parametrize("src,run", [(0, 1), (-1, 0), (3, 2**40)])
def test_c_messages_are_msgpacks_bytes_and_read_back_as_msgpack_reads_them(frames, src, run):
    packer = _wire.message_packer()
    msg = sp.wire_pack(TOKEN, src, run, frames, packer)
    assert msg == TOKEN + msgpack.packb([src, run, *frames], use_bin_type=True)
    assert msg == _wire.pack_message_py(TOKEN, src, run, frames, packer)
    out = sp.wire_split(TOKEN, msg)
    assert out == _wire.split_py(TOKEN, msg) == [src, run, *frames]
    assert [type(x) for x in out[2][:8]] == [type(x) for x in frames[0][:8]]


@pytest.mark.skipif(not hasattr(sp, "wire_pack"), reason="no C message codec")
def test_a_tuple_in_a_frame_travels_as_msgpack_sends_it():
    msg = sp.wire_pack(TOKEN, 0, 1, [[1, (2, 3)]], _wire.message_packer())
    assert sp.wire_split(TOKEN, msg) == [0, 1, [1, [2, 3]]]


class _Int(int):
    pass


@pytest.mark.skipif(not hasattr(sp, "wire_pack"), reason="no C message codec")
@pytest.mark.parametrize("frame", [[_Int(3)], [bytearray(b"ab")], [2**64], ["x\ud800"],
                                   [msgpack.ExtType(5, b"ab")]],
                         ids=["int-subclass", "bytearray", "big-int", "surrogate", "ext"])
def test_what_the_c_packer_does_not_handle_goes_to_msgpack(frame):
    packer = _wire.message_packer()
    try:
        expected: object = _wire.pack_message_py(TOKEN, 0, 1, [frame], packer)
    except Exception as e:  # noqa: BLE001 - the C path must raise the same
        with pytest.raises(type(e)):
            sp.wire_pack(TOKEN, 0, 1, [frame], packer)
        return
    msg = sp.wire_pack(TOKEN, 0, 1, [frame], packer)
    assert msg == expected
    assert sp.wire_split(TOKEN, msg) == _wire.split_py(TOKEN, msg)


@pytest.mark.skipif(not hasattr(sp, "wire_split"), reason="no C message codec")
def test_foreign_truncated_and_malformed_messages_read_as_the_python_split_reads_them():
    import random

    rnd = random.Random(5)
    packer = _wire.message_packer()
    assert sp.wire_split(b"\xff" * 16, TOKEN + b"\x92\x01\x02") is None    # foreign token
    assert sp.wire_split(TOKEN, TOKEN) is None                              # token alone
    assert sp.wire_split(TOKEN, TOKEN + b"\x91\x01") is None                # one item: no run
    assert sp.wire_split(TOKEN, TOKEN + b"\x01") is None                    # not a list
    for _ in range(3000):
        good = _wire.pack_message_py(TOKEN, 1, 2, [[rnd.randrange(-2**40, 2**40),
                                                     "s" * rnd.randrange(50),
                                                     b"b" * rnd.randrange(300),
                                                     {"k": [1.5] * rnd.randrange(20)}]], packer)
        cut = good[:rnd.randrange(len(good) + 1)] + rnd.randbytes(rnd.randrange(3))
        junk = TOKEN + rnd.randbytes(rnd.randrange(40))
        for msg in (cut, junk):
            assert sp.wire_split(TOKEN, msg) == _wire.split_py(TOKEN, msg), msg


@pytest.mark.parametrize("calls", ["libzmq-from-c", "pyzmq"])
def test_a_link_moves_messages_and_a_closed_link_raises_instead_of_touching_the_socket(
        calls, monkeypatch):
    import select
    import uuid

    import zmq

    from mpgo._transport import _link

    if calls == "pyzmq":
        monkeypatch.setattr(_link, "_CZ", None)
    elif _link._CZ is None:
        pytest.skip("libzmq is not reachable from C here")
    tag = uuid.uuid4().hex[:12]
    a = _link.Link(TOKEN, tag, 0)
    b = _link.Link(TOKEN, tag, 1)
    try:
        a.send(1, [30, 7, 1, b"v"])
        a.send(1, [31, 8, 0, False])
        assert a.flush() == 1
        ep = select.epoll()
        ep.register(b.fd, select.EPOLLIN | select.EPOLLET)
        got: list = []
        while not got:
            if not b.readable():
                ep.poll(5)
            got = b.recv_all()
        ep.close()
        assert got == [[0, 0, [30, 7, 1, b"v"], [31, 8, 0, False]]]
        assert b.readable() is False and b.armed
    finally:
        a.close()
        b.close()
    with pytest.raises(zmq.ZMQError):
        b.recv_all()
    with pytest.raises(zmq.ZMQError):
        b.readable()
    a.send(1, [1])
    assert a.flush() == 0           # closed: nothing is sent, nothing raises
