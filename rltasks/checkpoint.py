"""Checkpoint files: a msgpack codec for training state, atomic writes, checksums, rotation.

Why not ``torch.save``/pickle: loading a pickle runs whatever code the file names, so a
checkpoint picked up from a shared working dir could take over the machine. Loading here only
ever builds containers, numbers, strings, bytes, numpy arrays and torch tensors.

The memory bound, for any input whatever: ``load`` of a file of N bytes, or ``decode`` of N
bytes, allocates at most ``AMPLIFICATION * N + 1 MiB`` (160 N + 1 MiB) at its peak, as
tracemalloc counts it (torch tensors, which it does not see, cost about what numpy arrays
do); whatever it cannot decode within that is a ``CheckpointError``. A name that is not a
regular file, or a file over ``MAX_FILE_BYTES`` (the most the format can hold), is refused
before a byte is read. Why it holds:

- the envelope may be only a map of at most 3 entries, short strings and the payload's
  bytes (no array, no ext), and its checksum is checked before the payload is decoded;
- msgpack allocates a container at the size its header declares, before any element: so
  before msgpack reads a payload or an ext record's data, ``_scan`` walks the type bytes,
  building nothing, and refuses a container that declares more elements than the bytes
  left can hold (every element takes at least one) or that nests deeper than
  ``_MAX_DEPTH``. What passes builds only objects that are there, one per input byte at
  most, and the costliest per byte are real ones: a one-entry map keyed by a negative int
  (``{-32: {-32: ...}}``, 2 bytes) is a dict of ~255 bytes, 128x; every other shape measured
  costs less (an empty map or list ~80x, an array or tensor ~5x its raw bytes).

The scan costs about a microsecond per container or scalar and nothing per byte of a string,
bytes, array or tensor, so a real checkpoint (a few large arrays) loads as fast as before.

A file (format ``rltasks-checkpoint/1``) is one msgpack map
``{"format": FORMAT, "sha256": <hex digest of payload>, "payload": <bin: encode(obj)>}``.
Inside the payload, arrays and tensors are msgpack ext types whose data is itself msgpack
``[dtype, shape, raw bytes]`` (C order, little-endian):

- ext 1: numpy array. A numpy scalar (``np.float32(1.0)``) is stored with shape ``nil`` and
  decodes as a numpy scalar of the same dtype, so float32 arithmetic stays float32 on resume.
- ext 2: torch tensor, saved detached on the CPU; bfloat16 is stored as its int16 bits.
- ext 3: a python int outside msgpack's 64-bit range (numpy's PCG64 state holds 128-bit ints),
  as little-endian two's complement bytes.

Tuples come back as lists; dict keys keep their insertion order and may be ints, as in torch
optimizer state dicts. Encoding is deterministic: the same object gives the same bytes.
"""

import hashlib
import io
import math
import os
import reprlib
import sys
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

import msgpack
import numpy as np

from rltasks.failpoints import failpoint
from rltasks.safeio import FileRefused, read_regular, size_text

FORMAT = "rltasks-checkpoint/1"

_EXT_ARRAY, _EXT_TENSOR, _EXT_BIGINT = 1, 2, 3
_NUMPY_DTYPES = {
    name: np.dtype(name).newbyteorder("<")
    for name in ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
                 "uint64", "float16", "float32", "float64", "complex64", "complex128")
}
_TENSOR_DTYPES = {*_NUMPY_DTYPES, "bfloat16"}
_MAX_NDIM, _MAX_ELEMENTS = 64, 2**48
#: containers nest at most this deep in a checkpoint: save refuses deeper, load too
_MAX_DEPTH = 256
#: peak bytes a load allocates per byte of its input, at most (plus 1 MiB): see above; the
#: worst input measured costs 128 (CPython 3.11), the rest is margin for other versions
AMPLIFICATION = 160
#: msgpack's bin holds at most 4 GiB, so no checkpoint file is larger than this
MAX_FILE_BYTES = 2**32 + 2**16
_ENVELOPE_STR = 64  # the longest string the envelope holds: the sha256 hex digest
_TRUNCATED = "truncated (msgpack data ends early)"
_KEY_TYPES = (str, int, float, bool, bytes, type(None))

PathLike = str | os.PathLike[str]
#: a file or payload as pieces written one after the other (see ``chunks``)
Pieces = list[bytes | memoryview]


class CheckpointError(Exception):
    """A checkpoint file that cannot be read or written; the one-line message names the path
    and the reason.

    ``path`` and ``reason`` are also kept apart so callers (``Checkpointer.load_latest``, the
    CLI) can rephrase the error without parsing the message.
    """

    def __init__(self, message: str, *, path: PathLike | None = None,
                 reason: str | None = None) -> None:
        super().__init__(message.replace("\n", " "))
        self.path = None if path is None else str(path)
        self.reason = (reason or message).replace("\n", " ")


class _TooLarge(ValueError):
    """A state, or one array of it, beyond the 4 GiB that msgpack's bin and ext can hold."""


class _Corrupt(ValueError):
    """Raised inside the decoder with a readable reason; the caller adds the path."""


def _unreadable(source: PathLike, reason: str) -> CheckpointError:
    return CheckpointError(f"cannot load checkpoint {source}: {reason}", path=source, reason=reason)


# --------------------------------------------------------------------------------- encoding

def encode(obj: Any) -> bytes:
    """Serialise ``obj`` to msgpack bytes, deterministically.

    Accepts any nesting of dict/list/tuple/str/int/float/bool/None/bytes, numpy arrays and
    scalars of an allowed dtype and torch tensors. Anything else raises TypeError (sets,
    arbitrary objects, string or object arrays), so a task whose state cannot be saved fails
    when it saves rather than when it resumes.
    """
    return b"".join(chunks(obj))


def chunks(obj: Any) -> Pieces:
    """``encode(obj)`` as a list of pieces whose concatenation is those bytes: the raw data of
    each contiguous array or tensor is a memoryview of its own memory, not a copy, so a file
    can be written from them with no second copy of a large state in memory. Raises what
    ``encode`` raises, before anything is written."""
    pieces = _Pieces()
    try:
        pieces.walk(obj, 0)
    except RecursionError:
        raise ValueError("checkpoint object is nested too deeply") from None
    return pieces.out


class _Pieces:
    """The msgpack of an object, appended to ``out`` piece by piece: what ``msgpack.packb``
    writes for it, with arrays, tensors and big ints as ext types. One per ``chunks`` call
    (a msgpack Packer is not reentrant, and a signal handler may save during a save)."""

    def __init__(self) -> None:
        self.out: Pieces = []
        self.packer = msgpack.Packer(use_bin_type=True)

    def walk(self, obj: Any, depth: int) -> None:
        """Append ``obj``, inside ``depth`` containers."""
        if isinstance(obj, dict | list | tuple) and depth >= _MAX_DEPTH:
            raise ValueError(f"checkpoint object nests containers deeper than {_MAX_DEPTH} "
                             "levels, which load would refuse")
        pack = self.packer.pack
        if obj is None or type(obj) in (bool, float, str, bytes):
            self.out.append(pack(obj))
        elif type(obj) is int:
            if -(2**63) <= obj < 2**64:
                self.out.append(pack(obj))
            else:
                data = obj.to_bytes(obj.bit_length() // 8 + 1, "little", signed=True)
                self.out.append(pack(msgpack.ExtType(_EXT_BIGINT, data)))
        elif isinstance(obj, dict):
            self.out.append(self.packer.pack_map_header(len(obj)))
            for key, value in obj.items():
                self.walk(_key(key), depth + 1)
                self.walk(value, depth + 1)
        elif isinstance(obj, list | tuple):
            self.out.append(self.packer.pack_array_header(len(obj)))
            for value in obj:
                self.walk(value, depth + 1)
        else:
            self.other(obj, depth)

    def other(self, obj: Any, depth: int) -> None:
        """Arrays, tensors and subclasses of the scalar types."""
        if isinstance(obj, np.ndarray | np.number | np.bool_):
            self.out += _array_ext(obj)
            return
        torch = sys.modules.get("torch")  # imported if a tensor is here; keeps `inspect` light
        if torch is not None and isinstance(obj, torch.Tensor):
            self.out += _tensor_ext(obj, torch)
            return
        for base in (int, float, str, bytes):  # subclasses such as IntEnum or np.str_
            if isinstance(obj, base):
                self.walk(base(obj), depth)
                return
        raise TypeError(f"cannot checkpoint a {type(obj).__qualname__}; allowed: dict, list, "
                        "tuple, str, int, float, bool, None, bytes, numpy arrays, torch tensors")


def _key(key: Any) -> Any:
    if type(key) not in _KEY_TYPES:
        raise TypeError(f"checkpoint dict keys must be str, int, float, bool, bytes or None, "
                        f"not {type(key).__qualname__} ({key!r})")
    return key


def _array_ext(obj: np.ndarray | np.generic) -> Pieces:
    array = np.asarray(obj)
    name = array.dtype.name
    if name not in _NUMPY_DTYPES:
        raise TypeError(f"cannot checkpoint numpy dtype {array.dtype}; allowed: "
                        f"{', '.join(_NUMPY_DTYPES)}")
    shape = None if isinstance(obj, np.generic) else list(array.shape)
    return _ext(_EXT_ARRAY, name, shape, array)


def _tensor_ext(tensor: Any, torch: Any) -> Pieces:
    name = str(tensor.dtype).removeprefix("torch.")
    if name not in _TENSOR_DTYPES or tensor.layout != torch.strided or tensor.is_quantized:
        raise TypeError(f"cannot checkpoint a {tensor.layout} tensor of {tensor.dtype}; allowed: "
                        f"dense tensors of {', '.join(sorted(_TENSOR_DTYPES))}")
    tensor = tensor.detach().cpu().resolve_conj().resolve_neg().contiguous()
    if name == "bfloat16":  # numpy has no bfloat16: store the bits
        tensor = tensor.view(torch.int16)
    return _ext(_EXT_TENSOR, name, list(tensor.shape), tensor.numpy())


def _ext(code: int, name: str, shape: list[int] | None, array: np.ndarray) -> Pieces:
    """The ext record ``code: [name, shape, raw bytes]`` as two pieces (the ext's and the
    record's headers; the raw data, a view of ``array`` where it is contiguous), exactly as
    ``msgpack.packb`` would write it whole."""
    little = np.ascontiguousarray(array.astype(array.dtype.newbyteorder("<"), copy=False))
    raw = memoryview(little.reshape(-1).view(np.uint8)) if little.size else b""
    head = b"\x93" + msgpack.packb(name) + msgpack.packb(shape) + _bin_header(len(raw))
    return [_ext_header(code, len(head) + len(raw)) + head, raw]


def _bin_header(n: int) -> bytes:
    if n < 2**8:
        return b"\xc4" + n.to_bytes(1, "big")
    if n < 2**16:
        return b"\xc5" + n.to_bytes(2, "big")
    if n < 2**32:
        return b"\xc6" + n.to_bytes(4, "big")
    raise _TooLarge(f"an array of {size_text(n)}: more than the 4 GiB a checkpoint file holds")


_FIXEXT = {1: 0xD4, 2: 0xD5, 4: 0xD6, 8: 0xD7, 16: 0xD8}


def _ext_header(code: int, n: int) -> bytes:
    if n in _FIXEXT:
        return bytes((_FIXEXT[n], code))
    if n < 2**8:
        return bytes((0xC7, n, code))
    if n < 2**16:
        return b"\xc8" + n.to_bytes(2, "big") + bytes((code,))
    if n < 2**32:
        return b"\xc9" + n.to_bytes(4, "big") + bytes((code,))
    raise _TooLarge(f"an array of {size_text(n)}: more than the 4 GiB a checkpoint file holds")


# --------------------------------------------------------------------------------- decoding

def decode(data: bytes, *, source: str = "<bytes>") -> Any:
    """Rebuild the object that ``encode`` wrote; raise CheckpointError naming ``source`` on
    any malformed, truncated or foreign input (never another exception type)."""
    return _decode(data, source, _materialise)


def _unpack(data: bytes, ext_hook: Callable[[int, bytes], Any]) -> Any:
    _scan(data)  # first: no declared length may claim more than the data holds
    n = len(data)
    return msgpack.unpackb(data, raw=False, strict_map_key=False, ext_hook=ext_hook,
                           max_bin_len=n, max_str_len=n, max_array_len=n, max_map_len=n,
                           max_ext_len=n)


def _unpack_envelope(data: bytes) -> Any:
    """The envelope: a map of at most 3 entries, short strings and the payload's bytes. The
    usual shape (string keys, string or bin values) is read in place, a bin as a view of
    ``data`` rather than a copy of it; anything else through msgpack, to say what is wrong."""
    found = _envelope_in_place(memoryview(data))
    if found is not None:
        return found
    _scan(data)
    return msgpack.unpackb(data, raw=False, max_bin_len=len(data), max_str_len=_ENVELOPE_STR,
                           max_array_len=0, max_map_len=3, max_ext_len=0)


def _envelope_in_place(view: memoryview) -> dict[str, str | memoryview] | None:
    if not len(view) or not 0x80 <= view[0] <= 0x83:
        return None
    pos, out = 1, {}
    for _ in range(view[0] & 0x0F):
        key, pos = _short_value(view, pos)
        value, pos = _short_value(view, pos)
        if not isinstance(key, str) or value is None:
            return None
        out[key] = value
    return out if pos == len(view) else None


#: msgpack's bin types: lead byte -> width of the length field
_BIN_WIDTH = {0xC4: 1, 0xC5: 2, 0xC6: 4}
#: what the envelope's strings and bins may begin with (besides fixstr): (width, kind)
_STR_BIN_LEAD = {0xD9: (1, str), **{lead: (width, bytes) for lead, width in _BIN_WIDTH.items()}}


def _short_value(view: memoryview, pos: int) -> tuple[str | memoryview | None, int]:
    """The envelope string (at most _ENVELOPE_STR bytes) or bin at ``pos``, and the position
    after it; None if it is neither or runs past the end."""
    if pos >= len(view):
        return None, pos
    lead = view[pos]
    if 0xA0 <= lead <= 0xBF:
        width, kind, size = 0, str, lead & 0x1F
    elif lead in _STR_BIN_LEAD:
        width, kind = _STR_BIN_LEAD[lead]
        size = int.from_bytes(view[pos + 1:pos + 1 + width], "big")
    else:
        return None, pos
    start = pos + 1 + width
    if start + size > len(view) or kind is str and size > _ENVELOPE_STR:
        return None, pos
    if kind is bytes:
        return view[start:start + size], start + size
    try:
        return bytes(view[start:start + size]).decode(), start + size
    except UnicodeDecodeError:
        return None, pos


def _decode(data: bytes, source: PathLike, ext_hook: Callable[[int, bytes], Any]) -> Any:
    try:
        obj = _unpack(data, ext_hook)
        _reject_timestamps(obj)
        return obj
    except Exception as err:  # the promise is CheckpointError and nothing else
        raise _unreadable(source, _describe(err)) from err


def _describe(err: Exception) -> str:
    if isinstance(err, _Corrupt):
        return str(err)
    if isinstance(err, msgpack.ExtraData):
        return "trailing bytes after the msgpack data"
    if "incomplete input" in str(err):
        return _TRUNCATED
    return f"not valid msgpack data ({type(err).__name__}: {err})"


def _reject_timestamps(obj: Any) -> None:
    """msgpack decodes its timestamp ext (-1) without calling ext_hook; we never write one."""
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, msgpack.Timestamp):
            raise _Corrupt("unknown ext type -1")


def _record(data: bytes) -> Any:
    """An array record ``[name, shape, raw]`` as a list, its raw bytes a view of ``data``
    where the record has that shape; else what msgpack makes of it (for the error)."""
    _scan(data)
    n = len(data)
    unpacker = msgpack.Unpacker(io.BytesIO(data), raw=False, read_size=4096,
                                max_buffer_size=max(n, 4096), max_bin_len=n, max_str_len=n,
                                max_array_len=n, max_map_len=n, max_ext_len=n,
                                ext_hook=msgpack.ExtType, strict_map_key=False)
    try:
        if unpacker.read_array_header() == 3:
            name, shape = unpacker.unpack(), unpacker.unpack()
            pos = unpacker.tell()
            width = _BIN_WIDTH.get(data[pos])
            if width is not None:
                start = pos + 1 + width
                if start + int.from_bytes(data[pos + 1:start], "big") == n:
                    return [name, shape, memoryview(data)[start:]]
    except (ValueError, msgpack.UnpackException):
        pass
    return _unpack(data, msgpack.ExtType)


def _parse_ext(code: int, data: bytes) -> tuple[str, list[int] | None, bytes | memoryview]:
    """Check an array/tensor record: allowed dtype, sane shape, size matching the raw bytes."""
    fields = _record(data)
    if not (isinstance(fields, list) and len(fields) == 3):
        raise _Corrupt(f"malformed array record {reprlib.repr(fields)}")
    name, shape, raw = fields
    allowed = _TENSOR_DTYPES if code == _EXT_TENSOR else _NUMPY_DTYPES
    if not isinstance(name, str) or name not in allowed:
        raise _Corrupt(f"dtype {reprlib.repr(name)} is not allowed")
    if not isinstance(raw, bytes | memoryview):
        raise _Corrupt("array record without raw bytes")
    if shape is None and code == _EXT_ARRAY:
        count = 1
    elif (isinstance(shape, list) and len(shape) <= _MAX_NDIM
          and all(type(d) is int and d >= 0 for d in shape)
          and math.prod(max(d, 1) for d in shape) <= _MAX_ELEMENTS):  # even if one dim is 0
        count = math.prod(shape)
    else:
        raise _Corrupt(f"bad shape {reprlib.repr(shape)}")
    itemsize = 2 if name == "bfloat16" else _NUMPY_DTYPES[name].itemsize
    if count * itemsize != len(raw):
        raise _Corrupt(f"size mismatch: {name} of shape {reprlib.repr(shape)} needs "
                       f"{count * itemsize} bytes, the file holds {len(raw)}")
    if name == "bool" and np.any(np.frombuffer(raw, np.uint8) > 1):
        raise _Corrupt("bool array holding bytes other than 0 and 1")
    return name, shape, raw


def _materialise(code: int, data: bytes) -> Any:
    if code == _EXT_BIGINT:
        return int.from_bytes(data, "little", signed=True)
    if code not in (_EXT_ARRAY, _EXT_TENSOR):
        raise _Corrupt(f"unknown ext type {code}")
    name, shape, raw = _parse_ext(code, data)
    dtype = _NUMPY_DTYPES["int16" if name == "bfloat16" else name]
    flat = np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="))  # a writable copy
    if shape is None:
        return flat[0]  # numpy scalar
    array = flat.reshape(shape)
    if code == _EXT_ARRAY:
        return array
    import torch

    tensor = torch.from_numpy(array)
    return tensor.view(torch.bfloat16) if name == "bfloat16" else tensor


def _summarise(code: int, data: bytes) -> Any:
    """Like _materialise, but arrays and tensors become {"dtype", "shape"} (for ``peek``)."""
    if code in (_EXT_ARRAY, _EXT_TENSOR):
        name, shape, _ = _parse_ext(code, data)
        if shape is not None:
            return {"dtype": name, "shape": shape}
    return _materialise(code, data)


# ------------------------------------------------------------------- the allocation bound
#
# msgpack builds a container at the size its header declares, before a single element is
# read, so a few bytes declaring a 4-billion-entry list would cost 32 GB; limits such as
# max_array_len=len(data) still let each of 2000 nested headers in 10 KB claim 10k slots.
# _scan walks the type bytes first, building nothing: it skips every str, bin and ext body
# and refuses as soon as the elements declared but not yet seen outnumber the bytes left
# (each needs at least one) or containers nest deeper than _MAX_DEPTH. Data that passes
# declares only elements it holds, so msgpack then allocates for what is there: the bound
# in the module docstring. An ext record's own msgpack is scanned when its hook reads it.

_SCALAR, _FIXCONTAINER, _BODY, _CONTAINER, _INVALID = range(5)


def _lead_bytes() -> list[tuple[int, int, int]]:
    """For each first byte of a msgpack object: (kind, a, b). _SCALAR: a = its total size;
    _FIXCONTAINER: a = elements; _BODY (str, bin, ext): a = width of the length field, b =
    bytes before the body after it (ext's type); _CONTAINER: a = width of the count, b =
    elements per count (2 for a map)."""
    table = [(_SCALAR, 1, 0)] * 256  # fixints, nil, false, true
    for byte in range(0x80, 0xA0):  # fixmap, fixarray
        table[byte] = (_FIXCONTAINER, (byte & 0x0F) * (2 if byte < 0x90 else 1), 0)
    for byte in range(0xA0, 0xC0):  # fixstr
        table[byte] = (_SCALAR, 1 + (byte & 0x1F), 0)
    table[0xC1] = (_INVALID, 0, 0)
    for byte, size in {0xCA: 5, 0xCB: 9, 0xCC: 2, 0xCD: 3, 0xCE: 5, 0xCF: 9, 0xD0: 2, 0xD1: 3,
                       0xD2: 5, 0xD3: 9, 0xD4: 3, 0xD5: 4, 0xD6: 6, 0xD7: 10, 0xD8: 18}.items():
        table[byte] = (_SCALAR, size, 0)  # floats, ints, fixext
    for byte, width, extra in ((0xC4, 1, 0), (0xC5, 2, 0), (0xC6, 4, 0), (0xC7, 1, 1),
                               (0xC8, 2, 1), (0xC9, 4, 1), (0xD9, 1, 0), (0xDA, 2, 0),
                               (0xDB, 4, 0)):
        table[byte] = (_BODY, width, extra)  # bin, ext, str
    for byte, width, per in ((0xDC, 2, 1), (0xDD, 4, 1), (0xDE, 2, 2), (0xDF, 4, 2)):
        table[byte] = (_CONTAINER, width, per)  # array16/32, map16/32
    return table


_LEAD = _lead_bytes()


def _scan(data: bytes) -> None:
    """Check, allocating nothing that grows with the declared lengths, that ``data`` is one
    msgpack object whose containers declare no more elements than the bytes hold and nest
    at most _MAX_DEPTH deep; raise _Corrupt otherwise."""
    end, pos = len(data), 0
    pending = top = 1  # objects declared and not begun: in all, in the innermost container
    outer: list[int] = []  # the ``top`` of each enclosing container
    lead = _LEAD
    while True:
        while not top:
            if not outer:
                if pos != end:
                    raise _Corrupt(_TRUNCATED if pos > end else
                                   "trailing bytes after the msgpack data")
                return
            top = outer.pop()
        if pos >= end:
            raise _Corrupt(_TRUNCATED)
        kind, a, b = lead[data[pos]]
        top -= 1
        pending -= 1
        if kind == _SCALAR:
            pos += a
            continue
        if kind == _BODY:
            pos += 1 + a + b + int.from_bytes(data[pos + 1:pos + 1 + a], "big")
            continue
        if kind == _INVALID:
            raise _Corrupt(f"not valid msgpack data (byte 0xc1 at offset {pos})")
        start = pos
        if kind == _FIXCONTAINER:
            pos, count = pos + 1, a
        else:
            pos, count = pos + 1 + a, b * int.from_bytes(data[pos + 1:pos + 1 + a], "big")
        _check_container(len(outer), count, pending, pos, end, start)
        if count:
            outer.append(top)
            top = count
            pending += count


def _check_container(depth: int, count: int, pending: int, pos: int, end: int,
                     start: int) -> None:
    """A container of ``count`` elements begins at ``start`` inside ``depth`` others."""
    if pos > end:
        raise _Corrupt(_TRUNCATED)
    if depth >= _MAX_DEPTH:
        raise _Corrupt(f"containers nested deeper than {_MAX_DEPTH} levels (offset {start})")
    if pending + count > end - pos:
        raise _Corrupt(f"the container at offset {start} declares {count} elements: with the "
                       f"{pending} still due, more than the {end - pos} bytes left can hold")


# ------------------------------------------------------------------------------------ files

def _envelope(payload: Pieces) -> Pieces:
    """The file's pieces: ``payload``'s (from ``chunks``) behind the envelope's header, the
    same bytes as ``msgpack.packb({"format", "sha256", "payload": b"".join(payload)})``
    without joining them."""
    size, digest = sum(map(len, payload)), hashlib.sha256()
    if size >= 2**32:
        raise _TooLarge(f"the state is {size_text(size)}, more than the 4 GiB a checkpoint "
                        "file holds")
    for piece in payload:
        digest.update(piece)
    head = msgpack.packb({"format": FORMAT, "sha256": digest.hexdigest()}, use_bin_type=True)
    head = b"\x83" + head[1:] + msgpack.packb("payload") + _bin_header(size)
    return [head, *payload]


def _sniff(data: bytes) -> str | None:
    """Name the likely kind of a foreign file, to make the error actionable."""
    if data[:1] == b"\x80" and data[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "a pickle file, which rltasks never loads"
    if data[:2] == b"PK":
        return "a zip file (torch.save?), not an rltasks checkpoint"
    if data.lstrip()[:1] in (b"{", b"["):
        return "a JSON or text file, not an rltasks checkpoint"
    return None


def _read_payload(path: PathLike) -> bytes | memoryview:
    """Read a checkpoint file and return its payload (a view of the file's bytes) once the
    envelope and checksum are good."""
    try:
        data = read_regular(path, MAX_FILE_BYTES, "checkpoint")
    except FileNotFoundError:
        raise _unreadable(path, "no such file") from None
    except OSError as err:
        raise _unreadable(path, err.strerror or str(err)) from err
    except FileRefused as err:
        raise _unreadable(path, err.reason) from None
    except MemoryError:
        raise _unreadable(path, "not enough memory to read it") from None
    if not data:
        raise _unreadable(path, "empty file")
    try:
        envelope = _unpack_envelope(data)
    except Exception as err:
        raise _unreadable(path, _sniff(data) or _describe(err)) from err
    fmt = envelope.get("format") if isinstance(envelope, dict) else None
    if fmt != FORMAT:
        foreign = f"foreign format {reprlib.repr(fmt)}" if fmt is not None else None
        raise _unreadable(path, f"{foreign or _sniff(data) or 'not an rltasks checkpoint'}; "
                                f"expected format {FORMAT!r}")
    payload, digest = envelope.get("payload"), envelope.get("sha256")
    if not isinstance(payload, bytes | memoryview) or not isinstance(digest, str):
        raise _unreadable(path, "malformed envelope (no payload or sha256)")
    if hashlib.sha256(payload).hexdigest() != digest:
        raise _unreadable(path, "checksum mismatch (file corrupt or modified)")
    return payload


def write_atomic(path: Path, data: bytes | Pieces,
                 before_replace: Callable[[], None] | None = None) -> None:
    """Write ``data`` (bytes, or pieces to write one after the other) to ``path`` via a temp
    file, so readers see the old file or the new one, never a half-written one; on an
    OSError the old file stays and the temp file goes."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as file:
            for piece in [data] if isinstance(data, bytes) else data:
                file.write(piece)
            file.flush()
            os.fsync(file.fileno())
        failpoint(f"write:{path.name}")
        if before_replace is not None:
            before_replace()
        os.replace(tmp, path)
        failpoint(f"replaced:{path.name}")
    except BaseException as err:
        with suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(err, OSError):
            what = "checkpoint" if path.suffix == ".ckpt" else "file"
            raise CheckpointError(f"cannot write {what} {path}: {err}; the previous {what} "
                                  "is intact", path=path, reason=str(err)) from err
        raise
    with suppress(OSError):  # make the rename durable; not every OS can fsync a directory
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _file_pieces(obj: Any, path: PathLike) -> Pieces:
    """The pieces of the checkpoint file of ``obj``; a state too large for the format is a
    CheckpointError naming ``path``."""
    try:
        return _envelope(chunks(obj))
    except _TooLarge as err:
        reason = f"{err}; a replay buffer this large: lower buffer_size"
        raise CheckpointError(f"cannot write checkpoint {path}: {reason}", path=path,
                              reason=reason) from None


def save(path: PathLike, obj: Any) -> None:
    """Write ``obj`` atomically to ``path`` as a checksummed checkpoint file, streamed from
    the arrays' own memory (no second copy of the state is built)."""
    write_atomic(Path(path), _file_pieces(obj, path))


def load(path: PathLike) -> Any:
    """Read a checkpoint written by ``save``; raise CheckpointError naming the path and the
    reason if the file is missing, truncated, corrupt or foreign."""
    return decode(_read_payload(path), source=str(path))


def peek(path: PathLike) -> dict[str, Any]:
    """Summarise a checkpoint for ``rltasks inspect`` without building its tensors.

    Returns the format and, if the payload is a dict, its top-level entries except "state";
    arrays and tensors among them appear as ``{"dtype", "shape"}``.
    """
    obj = _decode(_read_payload(path), path, _summarise)
    entries = {k: v for k, v in obj.items() if k != "state"} if isinstance(obj, dict) else {}
    return {"format": FORMAT, **entries}


class Checkpointer:
    """Owns the checkpoint files of one working dir: last.ckpt, its rotated copies
    last.ckpt.1 ... last.ckpt.(keep-1), and best.ckpt.

    Older copies are kept so that a file damaged by a crash, a full disk or a bad sector
    still leaves an older one to resume from.
    """

    def __init__(self, workdir: PathLike, keep: int = 3) -> None:
        if keep < 1:
            raise ValueError(f"keep must be at least 1, got {keep}")
        self.workdir = Path(workdir)
        self.keep = keep
        self.last = self.workdir / "last.ckpt"
        self.best = self.workdir / "best.ckpt"

    def _nth(self, i: int) -> Path:
        return self.last if i == 0 else self.workdir / f"last.ckpt.{i}"

    def _rotate(self) -> None:
        """Shift last.ckpt.i to last.ckpt.(i+1), dropping the oldest, and make last.ckpt.1 a
        hard link to last.ckpt, so last.ckpt exists until the new file replaces it."""
        if self.keep == 1:
            return
        self._nth(self.keep - 1).unlink(missing_ok=True)
        for i in range(self.keep - 2, 0, -1):
            with suppress(FileNotFoundError):
                os.replace(self._nth(i), self._nth(i + 1))
        if self.last.exists():
            try:
                os.link(self.last, self._nth(1))
            except OSError:  # a filesystem without hard links
                os.replace(self.last, self._nth(1))

    def save(self, obj: Any, best: bool = False) -> Path:
        """Write ``obj`` as the new last.ckpt after rotating the older ones; with ``best``,
        first as best.ckpt: a kill between the two leaves last.ckpt one epoch behind, and the
        rerun redoes that epoch and writes the same best.ckpt again (the other order would
        leave a last.ckpt whose run state counts a best.ckpt never written). Returns the
        path of last.ckpt."""
        data = _file_pieces(obj, self.last)
        if best:
            write_atomic(self.best, data)
        write_atomic(self.last, data, before_replace=self._rotate)
        return self.last

    def candidates(self) -> list[Path]:
        """The existing last.ckpt, last.ckpt.1, ... newest first."""
        return [p for p in map(self._nth, range(self.keep)) if p.exists()]

    def load_latest(
        self,
        check: Callable[[Any], None] | None = None,
        log: Callable[[str], None] = print,
        apply: Callable[[Any, Path], Any] | None = None,
        falls_back: tuple[type[CheckpointError], ...] = (),
    ) -> tuple[Any, Path] | None:
        """Load the newest usable checkpoint and return ``(obj, path)``, or None if there is none.

        An unreadable file is reported through ``log`` and the next older one is tried.
        ``check(obj)`` may raise ValueError to refuse a checkpoint of another task, env or
        hparams: that propagates at once, since an older file would be just as foreign.
        With ``apply``, ``(apply(obj, path), path)`` is returned instead, and an error of a
        type in ``falls_back`` that it raises (a state that does not fit, inside a sound file)
        is reported and the next older file tried too. None usable is one error naming each
        file's problem (of the problems' own type when they all share one).
        """
        paths = self.candidates()
        if not paths:
            return None
        problems: list[CheckpointError] = []
        for i, path in enumerate(paths):
            try:
                obj = load(path)
            except CheckpointError as err:
                problems.append(err)
            else:
                if check is not None:
                    check(obj)
                try:
                    return (obj if apply is None else apply(obj, path)), path
                except falls_back as err:
                    problems.append(err)
            if i + 1 < len(paths):
                log(f"checkpoint {path} unusable ({problems[-1].reason}); falling back to "
                    f"{paths[i + 1]}")
        reason = "; ".join(f"{Path(str(err.path)).name}: {err.reason}" for err in problems)
        kinds = {type(err) for err in problems}
        error = kinds.pop() if len(kinds) == 1 else CheckpointError
        raise error(f"no usable checkpoint in {self.workdir} ({reason}); delete the working dir "
                    "or choose another --workdir", path=self.workdir, reason=reason)

    def clean_tmp(self) -> None:
        """Remove temp files left by writes that were interrupted (e.g. by SIGKILL)."""
        for name in (self.last.name, self.best.name):
            for tmp in self.workdir.glob(f".{name}.*.tmp"):
                with suppress(OSError):
                    tmp.unlink()
