"""Bounded reads of regular files: the one way rltasks reads a file of a working dir or of
the user (checkpoints, the lock, ``results.json``, ``metrics.jsonl``, ``--config``).

A name in a working dir may be anything: a symlink to ``/dev/zero`` (an endless read, then
``MemoryError``), a FIFO (``open`` blocks until a writer comes, for ever), a directory, a file
of many gigabytes. ``open_regular`` opens without blocking (``O_NONBLOCK``, so a FIFO cannot
hang), then refuses what ``fstat`` says is not a regular file and a file over the caller's
limit; ``read_regular`` then reads at most that limit (plus one byte, to see a file that grew
meanwhile). The refusal is a ``FileRefused`` (a ``ValueError``) naming the file and why;
errors of the operating system (no such file, permission denied) stay ``OSError``.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import Any, BinaryIO

import yaml

PathLike = str | os.PathLike[str]

KIB, MIB, GIB = 2**10, 2**20, 2**30

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


class FileRefused(ValueError):
    """A file rltasks will not read: not a regular file, or over the size limit of its kind.

    The message names the file and the reason; ``path`` and ``reason`` are kept apart for
    callers that rephrase it.
    """

    def __init__(self, what: str, path: PathLike, reason: str) -> None:
        super().__init__(f"{what} {os.fspath(path)} is {reason}")
        self.path = os.fspath(path)
        self.reason = reason


def _not_regular(what: str, path: PathLike, mode: int) -> FileRefused:
    kind = next((name for test, name in _KINDS if test(mode)), "special")
    return FileRefused(what, path, f"{kind}, not a regular file")


def size_text(n: int) -> str:
    """``1536`` -> ``'1.5 KiB'``: a size as people read it."""
    for unit, size in (("GiB", GIB), ("MiB", MIB), ("KiB", KIB)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n} bytes"


def open_regular(path: PathLike, max_bytes: int, what: str) -> BinaryIO:
    """Open ``path`` (symlinks followed) for reading in binary, if it is a regular file of
    at most ``max_bytes``; raise ``FileRefused`` otherwise, ``OSError`` if it cannot be opened.

    ``what`` names the file's kind in the message (``"checkpoint"``, ``"--config"``). The
    returned file is blocking again, so reads of a regular file behave as usual.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _not_regular(what, path, info.st_mode)
        if info.st_size > max_bytes:
            raise FileRefused(what, path, f"{size_text(info.st_size)}, over the "
                                          f"{size_text(max_bytes)} a {what} may be")
        os.set_blocking(fd, True)
        return open(fd, "rb", closefd=True)
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: PathLike, max_bytes: int, what: str) -> bytes:
    """The bytes of ``path`` if it is a regular file of at most ``max_bytes`` (see
    ``open_regular``); a file that grows past the limit while being read is refused too."""
    with open_regular(path, max_bytes, what) as file:
        size = os.fstat(file.fileno()).st_size
        chunks = [file.read(size + 1)]  # never a buffer of max_bytes for a small file
        total = len(chunks[0])
        while size < total <= max_bytes:  # it grows as we read (a log being appended)
            chunk = file.read(MIB)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    if total > max_bytes:
        raise FileRefused(what, path, f"growing past the {size_text(max_bytes)} a {what} "
                                      f"may be")
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def append_regular(path: PathLike, text: str, what: str) -> None:
    """Append ``text`` to ``path`` (created if absent) if it is a regular file; a FIFO, a
    device or a directory there is ``FileRefused`` at once, never written to or waited on."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK | os.O_CLOEXEC,
                     0o644)
    except OSError as err:  # a FIFO nobody reads (ENXIO), a directory (EISDIR)
        kind = {errno.ENXIO: "a FIFO (named pipe)", errno.EISDIR: "a directory"}.get(err.errno)
        if kind is None:
            raise
        raise FileRefused(what, path, f"{kind}, not a regular file") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise _not_regular(what, path, mode)
        os.set_blocking(fd, True)
        data = text.encode("utf8")
        while data:
            data = data[os.write(fd, data):]
    finally:
        os.close(fd)


def read_special(path: PathLike, max_bytes: int = 64 * KIB) -> bytes:
    """At most ``max_bytes`` of a kernel file such as ``/proc/<pid>/stat`` (not a regular
    file, and its size reads as 0): opened without blocking, read once, never endless."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if stat.S_ISFIFO(os.fstat(fd).st_mode):
            raise FileRefused("file", path, "a FIFO (named pipe), not a kernel file")
        return os.read(fd, max_bytes)
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------------- YAML

#: a config is a few hundred bytes; these bound a hostile one (an alias bomb: 505 bytes of
#: aliases name a million keys)
MAX_YAML_BYTES, MAX_YAML_NODES = 1 * MIB, 100_000


class YamlRefused(ValueError):
    """A YAML file refused for what it holds (not UTF-8, not YAML, an alias bomb, a cycle,
    nesting too deep); the one-line message names the file."""


class _TooBig(yaml.YAMLError):
    """A document whose aliases expand past MAX_YAML_NODES values, or into themselves."""


class _BoundedLoader(yaml.SafeLoader):
    """yaml's SafeLoader, refusing a document that expands (its aliases followed) into more
    than MAX_YAML_NODES values or that holds itself, before building any of it."""

    def construct_document(self, node: yaml.Node) -> Any:
        _check_expansion(node)
        return super().construct_document(node)


def _check_expansion(root: yaml.Node) -> None:
    """Count the values of ``root`` with every alias expanded (each node once, its size
    remembered: linear in the document), refusing a cycle or more than MAX_YAML_NODES."""
    sizes: dict[int, int] = {}
    active: set[int] = set()  # nodes being counted: meeting one again is a cycle
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        children = [n for pair in node.value for n in pair] if isinstance(
            node, yaml.MappingNode) else node.value if isinstance(node, yaml.SequenceNode) else []
        if done:
            active.discard(id(node))
            sizes[id(node)] = 1 + sum(sizes[id(child)] for child in children)
            if sizes[id(node)] > MAX_YAML_NODES:
                raise _TooBig(f"its aliases expand to over {MAX_YAML_NODES} values")
        elif id(node) in active:
            raise _TooBig("an alias refers to a value that holds it (a cycle)")
        elif id(node) not in sizes:
            active.add(id(node))
            stack.append((node, True))
            stack.extend((child, False) for child in children)


def load_yaml(path: PathLike, what: str) -> Any:
    """The document of the YAML (or JSON) file ``path``, read safely: a regular file of at
    most MAX_YAML_BYTES (else ``FileRefused``; ``OSError`` if it cannot be opened), built by
    a SafeLoader only once its aliases are known to expand to at most MAX_YAML_NODES values
    without a cycle; anything wrong inside is a one-line ``YamlRefused`` naming ``what`` and
    the file."""
    name = f"{what} {os.fspath(path)}"
    try:
        text = read_regular(path, MAX_YAML_BYTES, what).decode("utf8")
        return yaml.load(text, Loader=_BoundedLoader)  # a SafeLoader, bounded
    except UnicodeDecodeError:
        raise YamlRefused(f"{name} is not UTF-8 text: pass a YAML or JSON file") from None
    except _TooBig as err:
        raise YamlRefused(f"{name} is refused: {err}; write the values out") from None
    except RecursionError:
        raise YamlRefused(f"{name} is nested too deeply to be a config") from None
    except (yaml.YAMLError, ValueError) as err:
        if isinstance(err, FileRefused):
            raise
        raise YamlRefused(f"{name} is not YAML or JSON: {err}".splitlines()[0]) from None
