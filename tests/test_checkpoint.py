"""Tests for rltasks.checkpoint: codec round trips, hostile files, atomic writes, rotation."""

import copy
import hashlib
import json
import math
import os
import pickle
import tracemalloc
from contextlib import suppress

import msgpack
import numpy as np
import pytest
import torch
from helpers import RunsCommand, envelope
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rltasks.buffers import lazy_zeros
from rltasks.checkpoint import (
    FORMAT,
    Checkpointer,
    CheckpointError,
    decode,
    encode,
    load,
    peek,
    save,
)

NUMPY_DTYPES = ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                "float16", "float32", "float64", "complex64", "complex128"]
TORCH_DTYPES = [*NUMPY_DTYPES, "bfloat16"]
SHAPES = [(), (0,), (0, 3), (7,), (2, 3, 4)]
fuzz = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def sample(name: str, shape: tuple[int, ...]) -> np.ndarray:
    """Random bit patterns of dtype `name` (NaNs, infs and subnormals included)."""
    rng = np.random.default_rng(0)
    if name == "bool":
        return rng.integers(0, 2, size=shape).astype(bool)
    dtype = np.dtype(name)
    raw = rng.integers(0, 256, size=math.prod(shape) * dtype.itemsize, dtype=np.uint8)
    return raw.view(dtype).reshape(shape)


def tensor_sample(name: str, shape: tuple[int, ...]) -> torch.Tensor:
    if name == "bfloat16":
        return torch.from_numpy(sample("int16", shape)).view(torch.bfloat16)
    return torch.from_numpy(sample(name, shape))


def bits(t: torch.Tensor) -> bytes:
    t = t.contiguous()
    return (t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy().tobytes()


def assert_same(a, b) -> None:
    """Exact equality, bit for bit for arrays and tensors; tuples are expected back as lists."""
    if isinstance(a, torch.Tensor):
        assert type(b) is torch.Tensor and (a.dtype, a.shape) == (b.dtype, b.shape)
        assert bits(a) == bits(b)
    elif isinstance(a, np.ndarray | np.generic):
        assert type(b) is type(a) and a.dtype == b.dtype and np.shape(a) == np.shape(b)
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()
    elif isinstance(a, dict):
        assert type(b) is dict and list(a) == list(b)
        for key in a:
            assert_same(a[key], b[key])
    elif isinstance(a, list | tuple):
        assert type(b) is list and len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same(x, y)
    elif isinstance(a, float) and math.isnan(a):
        assert type(b) is float and math.isnan(b)
    else:
        assert type(a) is type(b) and a == b


def roundtrip(obj):
    back = decode(encode(obj))
    assert_same(obj, back)
    return back


def write_envelope(path, payload: bytes, fmt=FORMAT, digest=None):
    path.write_bytes(envelope(payload, fmt, digest))
    return path


def array_ext(name, shape, raw, code=1):
    return msgpack.packb(msgpack.ExtType(code, msgpack.packb([name, shape, raw])))


STATE = {
    "task": "ppo",
    "epoch": 3,
    "hparams": {"lr": 3e-4, "gamma": 0.99},
    "state": {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3), "obs": np.ones((2, 4)),
              "rng": np.random.default_rng(0).bit_generator.state},
}


# --------------------------------------------------------------------------------- round trips

@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", NUMPY_DTYPES)
def test_numpy_arrays_round_trip(name, shape):
    back = roundtrip(sample(name, shape))
    assert back.flags.writeable and back.flags.c_contiguous


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", TORCH_DTYPES)
def test_tensors_round_trip(name, shape):
    back = roundtrip(tensor_sample(name, shape))
    back.zero_()  # writable and owning its memory: no warning, no error


def test_views_parameters_and_big_endian_are_saved_as_plain_data():
    assert np.array_equal(decode(encode(np.arange(12, dtype=">i4").reshape(3, 4)[:, ::2])),
                          np.arange(12).reshape(3, 4)[:, ::2])
    t = torch.arange(12.0).reshape(3, 4).t()[1:]
    assert torch.equal(decode(encode(t)), t)
    param = torch.nn.Parameter(torch.ones(2))
    back = decode(encode(param))
    assert type(back) is torch.Tensor and not back.requires_grad
    conj = torch.tensor([1 + 2j, 3 - 1j]).conj()
    assert torch.equal(decode(encode(conj)), conj.resolve_conj())


def test_numpy_scalars_come_back_as_numpy_scalars():
    for x in [np.float32(1.5), np.float64(-0.0), np.int64(-3), np.uint64(2**64 - 1),
              np.bool_(True), np.complex64(1 + 2j), np.float16(np.inf)]:
        roundtrip(x)


def test_containers_and_python_values():
    obj = {
        "b": [1, (2, 3), [], {}],
        1: "int key",
        -7: None,
        "bytes": b"\x00\xff",
        "ints": [0, -1, 2**63 - 1, -(2**63), 2**64 - 1, 2**64, -(2**63) - 1, 2**200, -(2**200)],
        "floats": [0.0, -0.0, 1e-310, math.inf, -math.inf, math.nan],
        "bools": [True, False],
        "unicode": "éπ🙂",
        "a": {"nested": {"deep": [np.zeros(2), torch.ones(1)]}},
    }
    back = roundtrip(obj)
    assert list(back) == list(obj)  # insertion order kept


def test_float_arrays_with_nan_and_inf():
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -1.5])
    assert np.array_equal(decode(encode(x)), x, equal_nan=True)
    t = torch.tensor([math.nan, math.inf, 1.0], dtype=torch.bfloat16)
    assert torch.equal(decode(encode(t)).isnan(), t.isnan())


def test_encode_is_deterministic(tmp_path):
    assert encode(STATE) == encode(copy.deepcopy(STATE))
    save(tmp_path / "a.ckpt", STATE)
    save(tmp_path / "b.ckpt", copy.deepcopy(STATE))
    assert (tmp_path / "a.ckpt").read_bytes() == (tmp_path / "b.ckpt").read_bytes()


def test_adam_state_dict_round_trips_and_resumes_identically():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    back = roundtrip(opt.state_dict())
    assert 0 in back["state"]  # int keys preserved

    twin = copy.deepcopy(model)
    twin_opt = torch.optim.Adam(twin.parameters(), lr=0.01)
    twin_opt.load_state_dict(back)
    x = torch.randn(4, 3)
    for m, o in [(model, opt), (twin, twin_opt)]:
        o.zero_grad()
        m(x).sum().backward()
        o.step()
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), twin.parameters(),
                                                 strict=True))


def test_rng_states_round_trip():
    state = torch.get_rng_state()
    expected = torch.rand(5)
    torch.set_rng_state(roundtrip(state))
    assert torch.equal(torch.rand(5), expected)

    rng = np.random.default_rng(0)
    rng.random(3)
    other = np.random.default_rng(1)
    other.bit_generator.state = roundtrip(rng.bit_generator.state)
    assert np.array_equal(other.random(5), rng.random(5))


@pytest.mark.parametrize("bad", [
    {1, 2}, object(), np.array(["a"]), np.array([None], dtype=object),
    np.zeros(2, dtype=[("x", "f4")]), np.datetime64("2024-01-01"), {(1, 2): 3},
    torch.zeros(2, dtype=torch.float8_e4m3fn), torch.zeros(2, 2).to_sparse(), bytearray(b"x"),
])
def test_encode_rejects_what_it_cannot_restore(bad):
    with pytest.raises(TypeError):
        encode({"x": bad})


# ----------------------------------------------------------------------------- hostile files

def hostile_files():
    good = msgpack.packb({"format": FORMAT, "sha256": "0" * 64, "payload": encode(STATE)})
    return {
        "empty": b"",
        "json": json.dumps({"format": FORMAT, "state": {}}).encode(),
        "text": b"hello\n",
        "not a map": msgpack.packb([1, 2, 3]),
        "wrong format": msgpack.packb({"format": "other/1", "sha256": "", "payload": b""}),
        "no format": msgpack.packb({"payload": b""}),
        "bad checksum": good,
        "huge bin header": b"\x83\xa6format\xb4" + FORMAT.encode() + b"\xc6\xff\xff\xff\xff",
        "deep nesting": b"\x91" * 100_000,
        "torch zip": b"PK\x03\x04" + bytes(40),
    }


def hostile_payloads():
    return {
        "unknown ext": msgpack.packb(msgpack.ExtType(42, b"x")),
        "timestamp ext": msgpack.packb(msgpack.Timestamp(0)),
        "huge shape": array_ext("float32", [10**9, 10**9], b"abcd"),
        "huge zero-size shape": array_ext("float32", [0, 2**63], b""),
        "negative dim": array_ext("float32", [-1], b""),
        "float dim": array_ext("float32", [1.0], b"abcd"),
        "too many dims": array_ext("float32", [1] * 65, b"abcd"),
        "size mismatch": array_ext("int32", [2], b"\x00" * 4),
        "object dtype": array_ext("object", [1], b"\x00" * 8),
        "unicode dtype": array_ext("<U1", [1], b"a\x00\x00\x00"),
        "structured dtype": array_ext("[('x', '<f4')]", [1], b"\x00" * 4),
        "bfloat16 numpy": array_ext("bfloat16", [1], b"\x00\x00"),
        "tensor without shape": array_ext("float32", None, b"abcd", code=2),
        "bool byte 2": array_ext("bool", [1], b"\x02"),
        "record not a list": msgpack.packb(msgpack.ExtType(1, msgpack.packb("float32"))),
        "record garbage": msgpack.packb(msgpack.ExtType(2, b"\xc1")),
        "raw not bytes": array_ext("float32", [1], "abcd"),
        "invalid utf-8": b"\xa2\xff\xfe",
        "unhashable key": b"\x81\x90\x01",
        "truncated": encode(STATE)[:-3],
    }


@pytest.mark.parametrize("case", list(hostile_files()))
def test_hostile_file_raises_checkpoint_error_naming_path(tmp_path, case):
    path = tmp_path / f"{case}.ckpt"
    path.write_bytes(hostile_files()[case])
    for reader in (load, peek):
        with pytest.raises(CheckpointError) as info:
            reader(path)
        assert str(path) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("case", list(hostile_payloads()))
def test_hostile_payload_with_valid_checksum_raises(tmp_path, case):
    path = write_envelope(tmp_path / "x.ckpt", hostile_payloads()[case])
    for reader in (load, peek):
        with pytest.raises(CheckpointError, match=str(path)):
            reader(path)
    with pytest.raises(CheckpointError, match="<bytes>"):
        decode(hostile_payloads()[case])


def test_error_reasons_are_specific(tmp_path):
    cases = {
        "missing": (None, "no such file"),
        "empty": (b"", "empty file"),
        "pickle": (pickle.dumps({"a": 1}), "pickle"),
        "json": (b'{"a": 1}', "JSON"),
        "foreign": (msgpack.packb({"format": "x/2"}), "foreign format 'x/2'"),
        "checksum": (msgpack.packb({"format": FORMAT, "sha256": "0" * 64, "payload": b"\xc0"}),
                     "checksum mismatch"),
    }
    for name, (data, reason) in cases.items():
        path = tmp_path / name
        if data is not None:
            path.write_bytes(data)
        with pytest.raises(CheckpointError, match=reason) as info:
            load(path)
        assert info.value.path == str(path) and reason in info.value.reason
    path = write_envelope(tmp_path / "ext", msgpack.packb(msgpack.ExtType(42, b"")))
    with pytest.raises(CheckpointError, match="unknown ext type 42"):
        load(path)
    path = write_envelope(tmp_path / "size", array_ext("float32", [1000, 1000], b"abcd"))
    with pytest.raises(CheckpointError, match="size mismatch"):
        load(path)
    path = write_envelope(tmp_path / "shape", array_ext("float32", [10**9, 10**9], b"abcd"))
    with pytest.raises(CheckpointError, match="bad shape"):
        load(path)
    with pytest.raises(CheckpointError, match="a directory, not a regular file"):
        load(tmp_path)
    path = write_envelope(tmp_path / "lying", b"\xdd\x00\x00\x01\x00" * 50)
    with pytest.raises(CheckpointError, match="declares 256 elements: .* more than the 245 "
                                              "bytes left can hold"):
        load(path)
    path = write_envelope(tmp_path / "deep", b"\x91" * 300 + b"\xc0")
    with pytest.raises(CheckpointError, match="nested deeper than 256 levels"):
        load(path)
    path = tmp_path / "array envelope"
    path.write_bytes(msgpack.packb({"format": FORMAT, "sha256": [1], "payload": b""}))
    with pytest.raises(CheckpointError, match="exceeds max_array_len"):
        load(path)


def test_truncated_file_at_every_cut_point(tmp_path):
    data = encode_file(tmp_path)
    path = tmp_path / "cut.ckpt"
    for cut in range(len(data)):
        path.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match=str(path)):
            load(path)


def test_flipped_byte_at_every_position(tmp_path):
    data = encode_file(tmp_path)
    path = tmp_path / "flip.ckpt"
    for pos in range(len(data)):
        for mask in (0x01, 0xFF):
            damaged = bytearray(data)
            damaged[pos] ^= mask
            path.write_bytes(damaged)
            with pytest.raises(CheckpointError, match=str(path)):
                load(path)


def encode_file(tmp_path) -> bytes:
    small = {"epoch": 2, "state": {"w": torch.ones(3), "x": np.arange(4), "big": 2**70}}
    save(tmp_path / "small.ckpt", small)
    data = (tmp_path / "small.ckpt").read_bytes()
    assert_same(small, load(tmp_path / "small.ckpt"))
    return data


def test_malicious_pickle_is_refused_and_never_executed(tmp_path):
    marker = tmp_path / "MARKER"
    path = tmp_path / "last.ckpt"
    path.write_bytes(pickle.dumps({"state": RunsCommand(marker)}))
    with pytest.raises(CheckpointError, match="pickle"):
        load(path)
    with pytest.raises(CheckpointError):
        peek(path)
    with pytest.raises(CheckpointError):
        Checkpointer(tmp_path).load_latest(log=lambda _: None)
    assert not marker.exists()


@fuzz
@given(st.binary(max_size=512))
def test_random_bytes_file_raises_checkpoint_error(tmp_path, data):
    path = tmp_path / "random.ckpt"
    path.write_bytes(data)
    with pytest.raises(CheckpointError, match=str(path)):
        load(path)


@fuzz
@given(st.binary(max_size=512))
def test_random_payload_with_valid_checksum_decodes_or_raises(tmp_path, payload):
    path = write_envelope(tmp_path / "payload.ckpt", payload)
    try:
        load(path)
    except CheckpointError as err:
        assert str(path) in str(err)


@fuzz
@given(st.integers(0, 10_000), st.binary(min_size=1, max_size=8))
def test_mutated_payload_decodes_or_raises(pos, patch):
    data = bytearray(encode(STATE))
    pos %= len(data)
    data[pos:pos + len(patch)] = patch
    with suppress(CheckpointError):
        decode(bytes(data))


def test_peek_summarises_without_state(tmp_path):
    obj = {"task": "ppo", "epoch": 3, "probe": np.zeros((2, 5), np.float32),
           "scale": np.float32(2), "state": STATE["state"]}
    save(tmp_path / "x.ckpt", obj)
    assert peek(tmp_path / "x.ckpt") == {
        "format": FORMAT, "task": "ppo", "epoch": 3,
        "probe": {"dtype": "float32", "shape": [2, 5]}, "scale": np.float32(2)}
    save(tmp_path / "list.ckpt", [1, 2])
    assert peek(tmp_path / "list.ckpt") == {"format": FORMAT}


# --------------------------------------------------------------------------- large states

def test_a_large_state_is_written_from_its_own_memory_and_read_back_in_three_copies(tmp_path):
    """A replay buffer's checkpoint is streamed to the file from the arrays themselves: the
    save allocates nothing near their size (numpy's allocations are what tracemalloc sees),
    and the file is byte for byte the msgpack envelope an all-in-memory writer makes, so
    files of either kind read alike. Loading holds the file, the arrays, and the record of
    the one being built (msgpack hands it over as bytes): three copies, where reading the
    payload and each array's raw bytes out of the file as copies made four."""
    frames = np.random.default_rng(0).integers(0, 255, (4000, 84, 84), dtype=np.uint8)  # 28 MB
    state = {"buffer": {"frames": frames, "refs": np.arange(8000).reshape(2000, 4)},
             "w": torch.ones(3, 5), "epoch": 7}
    path = tmp_path / "big.ckpt"
    tracemalloc.start()
    try:
        save(path, state)
        saved_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        back = load(path)
        loaded_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert saved_peak < 2**20, saved_peak
    size = path.stat().st_size
    assert loaded_peak < 3.3 * size, (loaded_peak, size)
    assert_same(state, back)
    payload = encode(state)
    assert path.read_bytes() == msgpack.packb(
        {"format": FORMAT, "sha256": hashlib.sha256(payload).hexdigest(), "payload": payload})


def test_a_state_beyond_what_a_file_holds_is_refused_in_one_line_and_the_old_file_kept(tmp_path):
    checkpointer = Checkpointer(tmp_path)
    checkpointer.save({"epoch": 1})
    huge = lazy_zeros((2**32,), np.uint8)  # address space only: never written or read
    with pytest.raises(CheckpointError, match=r"4 GiB a checkpoint file holds; .*lower "
                                              r"buffer_size") as info:
        checkpointer.save({"epoch": 2, "frames": huge})
    assert "\n" not in str(info.value)
    assert load(checkpointer.last) == {"epoch": 1} and not list(tmp_path.glob(".*.tmp"))


# ------------------------------------------------------------------------------ Checkpointer

def epochs(ck: Checkpointer) -> list[int]:
    return [load(p)["epoch"] for p in ck.candidates()]


@pytest.mark.parametrize("keep", [1, 2, 3, 5])
def test_rotation_keeps_at_most_keep_files_newest_first(tmp_path, keep):
    ck = Checkpointer(tmp_path / "run", keep=keep)
    assert ck.candidates() == []
    for epoch in range(7):
        assert ck.save({"epoch": epoch}) == ck.last
    names = sorted(os.listdir(ck.workdir))
    assert names == sorted(["last.ckpt"] + [f"last.ckpt.{i}" for i in range(1, keep)])
    assert ck.candidates()[0] == ck.last
    assert epochs(ck) == list(range(6, 6 - keep, -1))


def test_keep_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="keep"):
        Checkpointer(tmp_path, keep=0)


def test_load_latest_falls_back_when_last_is_corrupt(tmp_path):
    ck = Checkpointer(tmp_path)
    for epoch in range(3):
        ck.save({"epoch": epoch})
    ck.last.write_bytes(ck.last.read_bytes()[:-5])
    messages = []
    obj, path = ck.load_latest(log=messages.append)
    assert obj == {"epoch": 1} and path == tmp_path / "last.ckpt.1"
    assert len(messages) == 1
    assert str(ck.last) in messages[0] and "falling back to" in messages[0]
    assert str(tmp_path / "last.ckpt.1") in messages[0] and "truncated" in messages[0]


def test_load_latest_raises_when_all_are_corrupt(tmp_path):
    ck = Checkpointer(tmp_path)
    for epoch in range(3):
        ck.save({"epoch": epoch})
    for path in ck.candidates():
        path.write_bytes(b"junk")
    messages = []
    with pytest.raises(CheckpointError, match="delete the working dir") as info:
        ck.load_latest(log=messages.append)
    assert str(tmp_path) in str(info.value) and "last.ckpt.2" in str(info.value)
    assert len(messages) == 2


def test_load_latest_on_empty_or_missing_dir_returns_none(tmp_path):
    assert Checkpointer(tmp_path).load_latest() is None
    assert Checkpointer(tmp_path / "absent").load_latest() is None


def test_load_latest_check_refusal_propagates_without_fallback(tmp_path):
    ck = Checkpointer(tmp_path)
    ck.save({"task": "dqn", "epoch": 0})
    ck.save({"task": "dqn", "epoch": 1})
    seen = []

    def check(obj):
        seen.append(obj["epoch"])
        if obj["task"] != "ppo":
            raise ValueError(f"checkpoint of task {obj['task']!r}, expected 'ppo'")

    with pytest.raises(ValueError, match="dqn"):
        ck.load_latest(check=check)
    assert seen == [1]
    obj, path = ck.load_latest(check=lambda obj: None)
    assert obj["epoch"] == 1 and path == ck.last


def test_best_writes_best_ckpt(tmp_path):
    ck = Checkpointer(tmp_path)
    ck.save({"epoch": 0})
    assert not ck.best.exists()
    ck.save({"epoch": 1}, best=True)
    ck.save({"epoch": 2})
    assert load(ck.best) == {"epoch": 1} and load(ck.last) == {"epoch": 2}


def fail_replace(real):
    def replace(src, dst):
        raise OSError(28, "No space left on device")
    return replace


def fail_final_replace(real):
    def replace(src, dst):
        if str(src).endswith(".tmp"):
            raise OSError(28, "No space left on device")
        return real(src, dst)
    return replace


def fail_fsync(real):
    def fsync(fd):
        raise OSError(28, "No space left on device")
    return fsync


@pytest.mark.parametrize("attr, make", [("replace", fail_replace),
                                        ("replace", fail_final_replace),
                                        ("fsync", fail_fsync)])
def test_failing_write_keeps_previous_checkpoint(tmp_path, monkeypatch, attr, make):
    ck = Checkpointer(tmp_path)
    ck.save({"epoch": 0})
    ck.save({"epoch": 1}, best=True)
    monkeypatch.setattr(os, attr, make(getattr(os, attr)))
    with pytest.raises(CheckpointError, match="No space left on device") as info:
        ck.save({"epoch": 2}, best=True)
    # best.ckpt is written first (rltasks.checkpoint.Checkpointer.save): its write fails
    assert str(ck.best) in str(info.value) and "previous checkpoint is intact" in str(info.value)
    with pytest.raises(CheckpointError, match="No space left on device") as info:
        ck.save({"epoch": 2})
    assert str(ck.last) in str(info.value) and "previous checkpoint is intact" in str(info.value)
    with pytest.raises(CheckpointError, match="No space left"):
        save(ck.best, {"epoch": 2})
    monkeypatch.undo()
    assert load(ck.last) == {"epoch": 1} and load(ck.best) == {"epoch": 1}
    assert ck.load_latest()[0] == {"epoch": 1}
    assert [n for n in os.listdir(tmp_path) if n.endswith(".tmp")] == []


def test_save_creates_missing_folders(tmp_path):
    path = tmp_path / "a" / "b" / "x.ckpt"
    save(path, {"ok": True})
    assert load(path) == {"ok": True}


def test_clean_tmp_removes_leftover_temp_files_only(tmp_path):
    ck = Checkpointer(tmp_path)
    ck.save({"epoch": 0})
    leftovers = [tmp_path / ".last.ckpt.123.tmp", tmp_path / ".best.ckpt.9.tmp"]
    for path in leftovers:
        path.write_bytes(b"partial")
    (tmp_path / "notes.tmp").write_text("keep me")
    assert ck.load_latest()[0] == {"epoch": 0}  # leftovers are never candidates
    ck.clean_tmp()
    assert sorted(os.listdir(tmp_path)) == ["last.ckpt", "notes.tmp"]
    Checkpointer(tmp_path / "absent").clean_tmp()
