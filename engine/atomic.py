"""Crash-safe file writes: a reader sees the old file or the new one, never a torn one."""
from __future__ import annotations

import errno
import json
import os
import uuid
from pathlib import Path


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, flush it to disk, then rename over ``path``.

    The temporary file is opened with mode 0o666 so the result gets the user's umask (mkstemp's 0o600
    would leave exported annotations unreadable to other users).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    except OSError as error:  # disk full, read-only, permissions: say which file and that nothing was lost
        reason = "the disk is full (no space left on device)" if error.errno == errno.ENOSPC else \
            (error.strerror or str(error))
        previous = "the previous file is unchanged" if path.exists() else "no partial file was left"
        raise OSError(error.errno, f"Could not write {path}: {reason}; {previous}.") from error


def remove_stale_temporary_files(folder: Path) -> list:
    """Delete the temporary files (``.NAME.PID.XXXXXXXX.tmp``) that writers killed mid-write left under
    ``folder``; files of a process that is still running are kept. Returns the removed paths."""
    removed = []
    for tmp in Path(folder).rglob(".*.tmp"):
        parts = tmp.name.rsplit(".", 3)
        if len(parts) != 4 or not parts[1].isdigit():
            continue  # not one of ours
        pid = int(parts[1])
        if _process_alive(pid):  # maybe still writing (this process included: another thread)
            continue
        try:
            tmp.unlink()
            removed.append(tmp)
        except OSError:
            pass
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=1, ensure_ascii=False).encode("utf-8"))


def read_json(path: Path):
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)
