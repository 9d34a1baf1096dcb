"""Hardening of the checkpoint loader, beyond the hostile cases of ``test_checkpoint.py``.

- structured fuzzing: hypothesis builds msgpack trees of array/tensor/bigint records with
  allowed and forbidden dtypes, sane and absurd shapes, matching and wrong sizes, and ext
  codes the loader does not know, inside random containers. Every input decodes or raises
  ``CheckpointError``; whatever decodes can be saved again and reloads the same (the loader
  returns nothing that ``save`` would refuse);
- bounds: deep nesting, huge declared lengths and the most object-hungry payloads decode or
  fail in bounded time, and peak memory stays within the bound ``rltasks.checkpoint``
  states, ``AMPLIFICATION`` times the input plus 1 MiB; hypothesis also builds lying
  headers (nested containers each declaring up to the input's length, wide maps, arrays of
  maps, inside ext records) that must be refused within it;
- code execution: pickles crafted to run a command (in every protocol, inside a valid
  envelope, inside a torch.save zip, and as a trial's last.ckpt under the real script) are
  refused and the command never runs;
- atheris, when installed, fuzzes the loader with coverage guidance for a few seconds.
"""

from __future__ import annotations

import io
import pickle
import struct
import subprocess
import sys
import time
import tracemalloc
import zipfile

import msgpack
import pytest
from helpers import ROOT, RunsCommand, envelope, environ, run_script, state_diffs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rltasks.checkpoint import AMPLIFICATION, Checkpointer, CheckpointError, decode, encode, load

fuzz = settings(max_examples=400, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

DTYPES = ["bool", "int8", "uint16", "int32", "int64", "uint64", "float16", "float32",
          "float64", "complex64", "bfloat16", "object", "<U1", "f4", "float8", "", "V8"]
ITEMSIZE = {"bool": 1, "int8": 1, "uint16": 2, "int32": 4, "int64": 8, "uint64": 8,
            "float16": 2, "float32": 4, "float64": 8, "complex64": 8, "bfloat16": 2}


@st.composite
def records(draw) -> msgpack.ExtType:
    """An ext record: mostly well-formed arrays/tensors, often subtly or grossly wrong."""
    code = draw(st.sampled_from([1, 1, 2, 2, 3]) | st.integers(0, 127))
    if code == 3:
        return msgpack.ExtType(3, draw(st.binary(max_size=40)))
    name = draw(st.sampled_from(DTYPES) | st.text(max_size=6))
    shape = draw(st.none() | st.lists(st.integers(0, 4), max_size=3)
                 | st.lists(st.integers(-2**63, 2**64 - 1), max_size=3)
                 | st.lists(st.floats() | st.text(max_size=2) | st.none(), max_size=2))
    count = 1
    for dim in shape if isinstance(shape, list) else []:
        count *= dim if isinstance(dim, int) and 0 <= dim < 2**20 else 1
    right = count * ITEMSIZE.get(name, 1)
    raw = draw(st.binary(min_size=right, max_size=right) if right <= 256 else st.just(b"")
               | st.binary(max_size=32) | st.text(max_size=4) | st.none())
    fields = draw(st.just([name, shape, raw]) | st.lists(st.sampled_from([name, shape, raw]),
                                                         max_size=4))
    return msgpack.ExtType(code, msgpack.packb(fields, use_bin_type=True))


SCALARS = (st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats()
           | st.text(max_size=8) | st.binary(max_size=8))
TREES = st.recursive(SCALARS | records(),
                     lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(SCALARS.filter(lambda k: k == k), inner, max_size=4),
                     max_leaves=12)


def decode_bounded(data: bytes, seconds: float = 5.0):
    """Decode ``data`` twice: timed, then under tracemalloc (which slows allocation) for the
    peak memory; return the object or the CheckpointError."""
    def attempt():
        try:
            return decode(data)
        except CheckpointError as err:
            return err

    start = time.perf_counter()
    result = attempt()
    elapsed = time.perf_counter() - start
    assert elapsed < seconds, f"{elapsed:.1f} s for {len(data)} bytes"
    del result
    tracemalloc.start()
    try:
        result = attempt()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= AMPLIFICATION * len(data) + 2**20, f"peak {peak} B for {len(data)} B"
    return result


@fuzz
@given(TREES)
def test_structured_payloads_decode_to_something_saveable_or_raise(tree):
    data = msgpack.packb(tree, use_bin_type=True)
    result = decode_bounded(data)
    if isinstance(result, CheckpointError):
        assert "\n" not in str(result) and str(result).startswith("cannot load checkpoint")
        return
    again = decode(encode(result))  # what the loader returns, save accepts, and reloads same
    assert not state_diffs(again, result)


@fuzz
@given(st.binary(min_size=1, max_size=64), st.integers(0, 2**16), st.integers(1, 4))
def test_valid_checkpoints_with_spliced_bytes_decode_or_raise(patch, pos, copies):
    """Splice random bytes (repeated) into a real state's payload: the length fields then
    disagree with the data in every possible way."""
    import numpy as np
    import torch

    state = {"w": torch.arange(12, dtype=torch.float32).reshape(3, 4), 7: [np.int8(1), 2**80],
             "h": [{"epoch": 1, "ret": 1.5}] * 3, "b": np.zeros((2, 0), bool)}
    data = bytearray(encode(state))
    pos %= len(data)
    data[pos:pos] = patch * copies
    result = decode_bounded(bytes(data))
    if not isinstance(result, CheckpointError):
        assert not state_diffs(decode(encode(result)), result)


#: container headers: (first byte, struct format of the count or None for fix*, count scale)
HEADERS = {"fixarray": (0x90, None), "fixmap": (0x80, None), "array16": (0xDC, ">H"),
           "array32": (0xDD, ">I"), "map16": (0xDE, ">H"), "map32": (0xDF, ">I")}


def header(kind: str, count: int) -> bytes:
    first, fmt = HEADERS[kind]
    if fmt is None:
        return bytes([first | min(count, 15)])
    return bytes([first]) + struct.pack(fmt, min(count, 2 ** (8 * struct.calcsize(fmt)) - 1))


@st.composite
def lying_headers(draw) -> bytes:
    """Container headers nested up to 3000 deep, each declaring up to as many elements as the
    whole input has bytes (what max_array_len=len(data) lets through), then a few real
    elements; sometimes wrapped in an ext record or given a valid envelope's payload role."""
    pattern = draw(st.lists(st.sampled_from(sorted(HEADERS)), min_size=1, max_size=6))
    kinds = pattern * draw(st.integers(1, 3000 // len(pattern)))  # nested up to 3000 deep
    tail = draw(st.binary(max_size=64))
    size = sum(len(header(k, 0)) for k in kinds) + len(tail)  # what max_*_len=len allowed
    shares = draw(st.lists(st.just(1.0) | st.floats(0, 1), min_size=len(pattern),
                           max_size=len(pattern)))
    counts = [int(size * shares[i % len(pattern)]) for i in range(len(kinds))]
    data = b"".join(header(k, c) for k, c in zip(kinds, counts, strict=True)) + tail
    if draw(st.booleans()):  # the same inside an array record's own msgpack
        data = msgpack.packb([msgpack.ExtType(1, data)] * draw(st.integers(1, 3)))
    return data


def _array32(n: int, item: bytes) -> bytes:
    return b"\xdd" + struct.pack(">I", n) + item * n


def _nested(kind: str, count: int, depth: int, tail: bytes = b"") -> bytes:
    return header(kind, count) * depth + tail


HUNGRY = {
    "250k empty maps": _array32(250_000, b"\x80"),
    "250k empty lists": _array32(250_000, b"\x90"),
    "250k nils": _array32(250_000, b"\xc0"),
    "200k float64": _array32(2 * 10**5, b"\xcb" + struct.pack(">d", 1.5)),
    "100k one-entry maps": _array32(10**5, b"\x81\x01\x80"),
    "50k tiny arrays": msgpack.packb([msgpack.ExtType(1, msgpack.packb(
        ["float32", [1], b"\x00\x00\x80\x3f"]))] * 50_000),
    "100k bigints": msgpack.packb([msgpack.ExtType(3, b"\x01" * 9)] * 10**5),
    "lists 1000 deep": b"\x91" * 1000 + b"\xc0",
    "maps 1000 deep": b"\x81\xc0" * 1000 + b"\xc0",
    "lists 100k deep": b"\x91" * 10**5 + b"\xc0",
    "maps 100k deep": b"\x81\xc0" * 10**5 + b"\xc0",
    "array32 of 4G items": b"\xdd\xff\xff\xff\xff",
    "map32 of 4G entries": b"\xdf\xff\xff\xff\xff",
    "str32 of 4 GB": b"\xdb\xff\xff\xff\xff",
    "bin32 of 4 GB": b"\xc6\xff\xff\xff\xff",
    "ext32 of 4 GB": b"\xc9\xff\xff\xff\xff\x01",
    "array of 1e12 float64": msgpack.packb(msgpack.ExtType(1, msgpack.packb(
        ["float64", [10**6, 10**6], b""]))),
    "bigint of 1 MB": msgpack.packb(msgpack.ExtType(3, b"\xff" * 2**20)),
    # the costliest shape that is really there: one-entry maps keyed by a negative int, in
    # chains (2 bytes a dict of ~255 bytes, the 128x the bound is set above)
    "chains of {-32: ...}": _array32(3000, b"\x81\xe0" * 50 + b"\x80"),
}

#: lying headers: each declares what the whole input could hold, none holds it; all refused
LYING = {
    "2000 nested array32 of 10k": _nested("array32", 10_000, 2000),
    "2000 nested map32 of 10k": _nested("map32", 10_000, 2000),
    "2000 nested array16 of 6k": _nested("array16", 6000, 2000),
    "array32 of 2000 map32 headers": header("array32", 2000) + _nested("map32", 10_000, 2000),
    "map32 of 1000 wide map16s": header("map32", 1000) + (b"\x00" + header("map16", 4000))
                                 * 1000,
    "array of arrays of maps": (header("array32", 9100) + header("array16", 9100)
                                + header("map32", 9100)) * 700,
    "ext record of nested headers": msgpack.packb(msgpack.ExtType(
        1, _nested("array32", 10_000, 2000))),
    "array record whose shape lies": msgpack.packb(msgpack.ExtType(1, b"\x93\xa7float32"
                                                   + _nested("array32", 7000, 1400))),
    "deeper than the limit, honestly": b"\x91" * 5000 + b"\xc0",
}


@pytest.mark.parametrize("case", list(HUNGRY))
def test_object_hungry_and_huge_declared_payloads_are_bounded(case):
    decode_bounded(HUNGRY[case])


@pytest.mark.parametrize("case", list(LYING))
def test_lying_headers_are_refused_within_the_bound(case):
    """Each of these cost msgpack ~8 bytes per declared slot before: 80 MB for 10 KB."""
    result = decode_bounded(LYING[case])
    assert isinstance(result, CheckpointError), case
    assert "\n" not in str(result) and str(result).startswith("cannot load checkpoint")


@settings(fuzz, max_examples=150)  # inputs of up to 15 KB, each decoded twice
@given(lying_headers())
def test_generated_lying_headers_decode_or_raise_within_the_bound(data):
    result = decode_bounded(data)
    if isinstance(result, CheckpointError):
        assert "\n" not in str(result)


def test_tensors_cost_bounded_memory_too(tmp_path):
    """Torch allocates outside tracemalloc's view: measure the process's peak RSS instead."""
    code = f"""
import resource, msgpack, torch
from rltasks.checkpoint import decode
data = msgpack.packb([msgpack.ExtType(2, msgpack.packb(["bool", [0], b""]))] * 100_000)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
decode(data)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
assert (after - before) * 1024 <= {AMPLIFICATION} * len(data) + 2**20, (after - before, len(data))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env=environ())
    assert proc.returncode == 0, proc.stderr[-2000:]


# ------------------------------------------------------------------------ code execution

def torch_zip(pickled: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("archive/data.pkl", pickled)
        zf.writestr("archive/version", "3\n")
    return buffer.getvalue()


def test_crafted_pickles_in_every_wrapping_are_refused_and_never_run(tmp_path):
    marker = tmp_path / "MARKER"
    evil = {"state": RunsCommand(marker)}
    files = {f"protocol {p}": pickle.dumps(evil, protocol=p) for p in range(6)}
    files["pickle in a valid envelope"] = envelope(pickle.dumps(evil))
    files["torch.save zip"] = torch_zip(pickle.dumps(evil))
    for name, data in files.items():
        path = tmp_path / "last.ckpt"
        path.write_bytes(data)
        with pytest.raises(CheckpointError):
            load(path)  # the envelope case: its payload (the pickle) fails to decode
        if name.startswith("protocol"):
            with pytest.raises(CheckpointError):
                decode(data)
        with pytest.raises(CheckpointError):
            Checkpointer(tmp_path).load_latest(log=lambda _: None)
        assert not marker.exists(), name


def test_trial_whose_last_checkpoint_is_a_crafted_pickle_refuses_it(tmp_path):
    marker, workdir = tmp_path / "MARKER", tmp_path / "run"
    workdir.mkdir()
    (workdir / "last.ckpt").write_bytes(pickle.dumps({"state": RunsCommand(marker)}))
    proc = run_script("ppo", "--epochs", "1", workdir=workdir)
    assert proc.returncode == 2, proc.stderr[-3000:]
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: no usable checkpoint in {workdir}") and "pickle" in line
    assert not marker.exists()


# -------------------------------------------------------------------------------- atheris

def test_atheris_finds_no_crash_in_a_short_run(tmp_path):
    pytest.importorskip("atheris")
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "fuzz_checkpoint.py"),
                           "-max_total_time=5", "-max_len=2048", "-rss_limit_mb=4096",
                           str(tmp_path / "corpus")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=180,
                          env=environ(PYTHONWARNINGS="ignore"))
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "Done " in proc.stderr
