"""File helpers: hashing, and writing so that a failure leaves nothing half-written behind."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from typing import Iterator


def file_sha256(path: str) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def current_umask() -> int:
    """The process's umask (read by setting and restoring it: POSIX has no read-only call)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def publish(tmp: str, path: str) -> None:
    """Move a finished temporary file into place with the mode any tool's output has (0666 less the umask):
    mkstemp makes 0600 files, which a server running as another user cannot read."""
    os.chmod(tmp, 0o666 & ~current_umask())
    os.replace(tmp, path)


@contextmanager
def atomic_path(path: str, suffix: str = ".part") -> Iterator[str]:
    """Yield a temporary path beside `path`; on success it replaces `path`, on any error it is removed.
    `suffix` ends the temporary name (writers that pick the format from it, like OpenCV's, need the real one)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=suffix)
    os.close(fd)
    try:
        yield tmp
        publish(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json(path: str, doc: dict) -> None:
    """Write JSON atomically (temporary file beside it, then rename)."""
    with atomic_path(path, suffix=".json") as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1)
