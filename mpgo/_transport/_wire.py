"""What travels between processes: encoded values and framed messages.

Values
------
`encode(v)` gives bytes that `decode` turns back into an equal value of the
same type. msgpack carries what it represents exactly (None, bool, int within
64 bits, float, str, bytes, and lists/dicts made only of those); everything
else — tuples, sets, int subclasses, big ints, objects, channels and other
mpgo references — is pickled (cloudpickle, protocol 5) inside msgpack ext
type 1. `encode` raises `TypeError` for a value that cannot be pickled and
`ValueError` for one larger than `MAX_VALUE`, before anything is sent.

Messages
--------
``token(16) ‖ msgpack([src, run, frame, frame, ...])``; a frame is a list
``[type, field, ...]``. `split` checks the token before it decodes anything
(P21): bytes from a process outside the run are dropped unread.
"""

from __future__ import annotations

import hmac
import os
import pickle
from typing import Any

import cloudpickle
import msgpack

MAX_VALUE = int(os.environ.get("MPGO_MAX_VALUE", 256 * 1024 * 1024))
TOKEN_LEN = 16
_EXT_PICKLE = 1


def _default(obj: Any) -> msgpack.ExtType:
    return msgpack.ExtType(_EXT_PICKLE, dumps(obj))


def dumps(obj: Any) -> bytes:
    """Pickle for another *worker*; TypeError (naming the type) when impossible.

    Plain pickle first: functions and classes of ``__main__`` and of modules
    exist in every worker (forked from the same supervisor), so they travel
    by reference, 20-50x cheaper than cloudpickle's by-value copy. Lambdas,
    closures and local classes fall back to cloudpickle.
    """
    try:
        return pickle.dumps(obj, protocol=5)
    except Exception:  # noqa: BLE001 - anything pickle refuses, cloudpickle may take
        return dumps_by_value(obj)


def dumps_by_value(obj: Any) -> bytes:
    """Pickle with cloudpickle (functions by value): for what leaves the supervisor
    after the fork (`Runtime.run`), whose functions the workers may not have."""
    try:
        return cloudpickle.dumps(obj, protocol=5)
    except Exception as e:  # noqa: BLE001 - pickling raises anything; re-typed below
        raise TypeError(
            f"mpgo: cannot send a value of type {type(obj).__name__} to another worker: "
            f"it cannot be pickled ({type(e).__name__}: {e})") from e


def _ext_hook(code: int, data: bytes) -> Any:
    if code == _EXT_PICKLE:
        return pickle.loads(data)
    return msgpack.ExtType(code, data)


_packer = msgpack.Packer(default=_default, strict_types=True, use_bin_type=True,
                         autoreset=True)
_pack = _packer.pack


# Types whose packing never calls back into Python: the shared Packer is safe
# for them even with the sysmon thread around (the GIL is not released).
_SCALARS = frozenset((str, bytes, float, bool, type(None)))


def encode(v: Any) -> bytes:
    """Encode one value for another worker. Any thread.

    With the C accelerator this name is `_speedups.wire_encode`: scalars are
    written in C (the same bytes), everything else comes here."""
    t = type(v)
    try:
        if t is int and -(1 << 63) <= v < (1 << 64) or t in _SCALARS:
            b = _pack(v)
        elif t is bytearray or t is memoryview:
            # msgpack would send these as bytes: keep the type (nested ones
            # inside lists and dicts still arrive as bytes)
            b = msgpack.packb(msgpack.ExtType(_EXT_PICKLE, dumps(v if t is bytearray
                                                                  else bytes(v))))
        else:
            b = msgpack.packb(v, default=_default, strict_types=True, use_bin_type=True)
    except OverflowError:
        b = msgpack.packb(msgpack.ExtType(_EXT_PICKLE, dumps(v)))
    except TypeError:
        raise
    except ValueError as e:
        # msgpack refuses some containers (e.g. too deep); pickle them whole.
        if "recursion" in str(e).lower() or "depth" in str(e).lower():
            b = msgpack.packb(msgpack.ExtType(_EXT_PICKLE, dumps(v)))
        else:
            raise
    if len(b) > MAX_VALUE:
        raise ValueError(
            f"mpgo: value of {len(b)} bytes exceeds the frame limit of {MAX_VALUE} bytes "
            f"(set MPGO_MAX_VALUE to change it)")
    return b


def decode(b: bytes) -> Any:
    """Decode a value made by `encode`. Any thread. May raise what unpickling raises.

    With the C accelerator this name is `_speedups.wire_decode` (scalars in C)."""
    return msgpack.unpackb(b, ext_hook=_ext_hook, raw=False, strict_map_key=False,
                           use_list=True)


encode_py, decode_py = encode, decode
_sp: Any
try:
    from .. import _speedups as _sp  # type: ignore[attr-defined,no-redef]
except ImportError:
    _sp = None
if _sp is not None and hasattr(_sp, "wire_encode"):
    _sp.set_wire(encode_py, decode_py)
    encode = _sp.wire_encode  # noqa: F811 - the same function, scalars in C
    decode = _sp.wire_decode  # noqa: F811


# ---------------------------------------------------------------------------
# Messages
# ---------------------------------------------------------------------------

def new_token() -> bytes:
    return os.urandom(TOKEN_LEN)


def pack_message(token: bytes, src: int, run: int, frames: list[Any],
                 packer: msgpack.Packer) -> bytes:
    """One message carrying every frame for one destination: [src, run, frame...].

    `packer` is a `message_packer()` (reused: `packb` would allocate one per
    message); whoever passes one keeps it to one thread at a time."""
    return token + packer.pack([src, run, *frames])


def message_packer() -> msgpack.Packer:
    """A Packer for `pack_message` (frames hold only msgpack types: no callback)."""
    return msgpack.Packer(use_bin_type=True, autoreset=True)


def split(token: bytes, msg: bytes) -> list[Any] | None:
    """[src, run, frame, ...] of a message, or None when it is not from this run.

    The token is compared in constant time before a single byte is decoded.
    """
    if len(msg) <= TOKEN_LEN or not hmac.compare_digest(msg[:TOKEN_LEN], token):
        return None
    try:
        out = msgpack.unpackb(memoryview(msg)[TOKEN_LEN:], raw=False, use_list=True,
                              strict_map_key=False)
    except Exception:  # noqa: BLE001 - a corrupt message is dropped like a foreign one
        return None
    if type(out) is not list or len(out) < 2:
        return None
    return out


split_py, pack_message_py = split, pack_message
if _sp is not None and hasattr(_sp, "wire_split"):
    _sp.set_split(split_py, pack_message_py)
    # The same functions, with int/float/bool/None/str/bytes/list/tuple/dict
    # messages written and read in C (byte for byte what msgpack writes).
    split = _sp.wire_split  # noqa: F811
    pack_message = _sp.wire_pack  # noqa: F811


# Frame types. Keep them small ints; the table in docs/design.md names them.
HELLO = 1            # w->S  [HELLO, pid]
START = 2            # S->w0 [START, run, main_blob]
MAIN_DONE = 3        # w0->S [MAIN_DONE, run, ok, blob, tb]
FAILED = 4           # w->S  [FAILED, run, gid, blob, tb, text]
EXIT = 5             # S->w  [EXIT]
END_RUN = 6          # S->w  [END_RUN, run]
RUN_ENDED = 7        # w->S  [RUN_ENDED, run]
DUMP_REQ = 8         # w->S [DUMP_REQ, ticket] / S->w [DUMP_REQ, ticket]
DUMP = 9             # w->S [DUMP, ticket, text]; S->w [DUMP, ticket, text]
RECORDS = 10         # any->w [RECORDS, [[gid, home, blob], ...]]
GLOBAL_PUT = 11      # w->S  [GLOBAL_PUT, [[gid, home, blob], ...]]
GLOBAL_GET = 12      # w->S  [GLOBAL_GET]
RESULT = 13          # w->home [RESULT, gid, ok, blob]
JOIN = 14            # w->home [JOIN, gid, ticket]
JOINED = 15          # home->w [JOINED, ticket, ok, blob]
HOG = 16             # w->S  [HOG, gid, seconds, where]
PING = 17            # any   [PING, ticket] -> [PONG, ticket]
PONG = 18
START_RUN = 19       # S->w  [START_RUN, run, main_blob]
INTERRUPT = 20       # S->w0 [INTERRUPT, signum]

CH_SEND = 30
CH_SENT = 31
CH_PUT = 32
CH_WANT = 33
CH_CREDIT = 34
CH_DEMAND = 35
CH_DELIVER = 36
CH_RECALL = 37
CH_RETURN = 38
CH_CLOSE = 39
CH_CLOSED = 40
CH_CLOSE_DONE = 41
CH_CLOSED_ACK = 42
SELECT = 43
SELECT_DONE = 44
CH_LEN = 45
CH_LEN_IS = 46
CH_PROMOTE = 47
CH_DRAINED = 48
CH_OPEN = 49
CH_TRYSEND = 50
CH_CONSUMED = 51
CH_REF = 52          # w->B [CH_REF, cid]: a reference was pickled (in flight)
CH_UNREF = 53        # w->B [CH_UNREF, cid]: an in-flight reference arrived where one is held
CH_FORGET = 54       # w->B [CH_FORGET, cid, run]: this worker's last object for cid is gone
CH_PREPARE = 70      # B->holder [CH_PREPARE, cid]: the home moves; fence and hold frames
CH_FENCE = 71        # holder->old home [CH_FENCE, cid]: nothing more from me there
CH_HOME = 72         # B->w [CH_HOME, cid, state]: you are the channel's home now
CH_MOVED = 73        # B->holder [CH_MOVED, cid, home]: send to this home from now on
CH_REVOKE = 74       # B->home [CH_REVOKE, cid, [holders to await]]: send the state back
CH_HOME_BACK = 75    # home->B [CH_HOME_BACK, state]
CH_DROP = 76         # B->home [CH_DROP, cid]: garbage: forget it
# pair rings (docs/design.md §6.9); home = the worker homing cid, sender = its partner
CH_RING = 77         # home->sender [CH_RING, cid, off]: send into the ring at arena offset off
CH_RING_ON = 78      # sender->home [CH_RING_ON, cid, accepted]: ring values follow this frame
CH_RING_WAKE = 79    # home->sender [CH_RING_WAKE, cid]: credit or room for senders waiting
CH_BIG = 80          # sender->home [CH_BIG, cid, v]: the value of the ring's next placeholder
CH_RING_POKE = 81    # sender->home [CH_RING_POKE, cid]: look at the ring (values, or a sender waits)

LK_WAIT = 60         # w->S [LK_WAIT, slot, kind, gid, ticket, timeout]
LK_WAKE = 61         # w->S [LK_WAKE, slot, kind, arg]
LK_CANCEL = 62       # w->S [LK_CANCEL, slot, ticket]
LK_GRANT = 63        # S->w [LK_GRANT, ticket, code, info]
