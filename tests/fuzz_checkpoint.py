"""Coverage-guided fuzzing of the checkpoint loader with atheris (libFuzzer for Python).

    python tests/fuzz_checkpoint.py -max_total_time=60          # fuzz for a minute
    python tests/fuzz_checkpoint.py -runs=100000 CORPUS_DIR     # keep what it finds

Each input is tried as a whole file (``load``: envelope, checksum, payload) and as a
payload (``decode``: what a good checksum lets through). Anything but a return or
``CheckpointError`` is a crash that libFuzzer reports with the input that caused it, and so
is a peak of memory (tracemalloc's) over the bound ``rltasks.checkpoint`` states,
``AMPLIFICATION`` times the input plus 1 MiB. The seed corpus holds lying container headers
(nested, wide, inside an array record), which mutate into more.
``tests/test_fuzz.py`` runs it for a few seconds when atheris is installed (the ``fuzz``
extra, Linux x86-64 wheels).
"""

import os
import struct
import sys
import tempfile
import tracemalloc

import atheris
import numpy  # noqa: F401  (imported before the instrumentation: instrumenting torch's Python
import torch  # noqa: F401  files would take two minutes of CPU and find nothing of ours)

with atheris.instrument_imports():
    import msgpack

    from rltasks import checkpoint

_DIR = tempfile.mkdtemp(prefix="rltasks-fuzz-")
_PATH = os.path.join(_DIR, "input.ckpt")


def one_input(data: bytes) -> None:
    with open(_PATH, "wb") as file:
        file.write(data)
    for attempt in (lambda: checkpoint.load(_PATH), lambda: checkpoint.decode(data)):
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        try:
            attempt()
        except checkpoint.CheckpointError:
            pass
        peak = tracemalloc.get_traced_memory()[1] - before
        if peak > checkpoint.AMPLIFICATION * len(data) + 2**20:
            raise AssertionError(f"peak {peak} B for an input of {len(data)} B")


def envelope(payload: bytes) -> bytes:
    """A checkpoint file's bytes around ``payload``, as ``checkpoint.save`` writes them."""
    return b"".join(checkpoint._envelope([payload]))


def lying_headers() -> dict[str, bytes]:
    """Headers each declaring what the whole input could hold (the fuzzer mutates them)."""
    arrays = (b"\xdd" + struct.pack(">I", 2000)) * 400
    return {
        "nested-arrays": arrays,
        "nested-maps": (b"\xdf" + struct.pack(">I", 2000)) * 400,
        "arrays-of-maps": (b"\xdc\x07\xd0\xde\x07\xd0") * 300,
        "ext-of-headers": msgpack.packb(msgpack.ExtType(1, arrays)),
        "file-of-headers": envelope(arrays),
    }


def seed_corpus(folder: str) -> None:
    """Valid checkpoints and payloads to start from (the fuzzer mutates them)."""
    import numpy as np

    samples = [
        {"epoch": 3, "state": {"w": np.arange(6, dtype=np.float32).reshape(2, 3),
                               "big": 2**70, 1: [None, True, 1.5, b"x", "s"]}},
        [np.zeros(0, np.int64), np.bool_(True), np.float16(2)],
    ]
    os.makedirs(folder, exist_ok=True)
    for i, obj in enumerate(samples):
        payload = checkpoint.encode(obj)
        with open(os.path.join(folder, f"payload{i}"), "wb") as file:
            file.write(payload)
        with open(os.path.join(folder, f"file{i}"), "wb") as file:
            file.write(envelope(payload))
    with open(os.path.join(folder, "ext"), "wb") as file:
        file.write(msgpack.packb(msgpack.ExtType(2, msgpack.packb(["bfloat16", [1], b"ab"]))))
    for name, data in lying_headers().items():
        with open(os.path.join(folder, name), "wb") as file:
            file.write(data)


if __name__ == "__main__":
    corpus = [a for a in sys.argv[1:] if not a.startswith("-")]
    if corpus:
        seed_corpus(corpus[0])
    tracemalloc.start()
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
