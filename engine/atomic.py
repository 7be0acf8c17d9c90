"""Crash-safe file writes: a reader sees the old file or the new one, never a torn one."""
from __future__ import annotations

import contextlib
import errno
import json
import os
import uuid
from pathlib import Path


@contextlib.contextmanager
def atomic_writer(path: Path):
    """A binary handle whose contents replace ``path`` only when the block ends without an error: written to a
    temporary file in the same folder, flushed to disk, then renamed over ``path`` (a reader sees the old file
    or the new one). An error inside the block leaves ``path`` as it was and no temporary file behind.

    The temporary file is opened with mode 0o666 so the result gets the user's umask (mkstemp's 0o600
    would leave exported annotations unreadable to other users).
    """
    path = Path(path)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            with os.fdopen(fd, "wb") as handle:
                yield handle
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


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` crash-safely (:func:`atomic_writer`)."""
    with atomic_writer(path) as handle:
        handle.write(data)


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


class ProjectFileError(ValueError):
    """A project (or input) file exists but cannot be used: unreadable, not valid JSON, truncated, garbled or
    of the wrong shape. The message names the file, the problem and, where there is one, what to do."""


_JSON_TYPES = {dict: "a JSON object", list: "a list", str: "a string", int: "a number", float: "a number",
               bool: "true or false", type(None): "null"}


def read_json(path: Path, expected: type | None = None, hint: str = ""):
    """The parsed contents of a JSON file.

    expected: ``dict`` or ``list`` to require that top-level type. A missing file raises FileNotFoundError;
    a file that cannot be read, is not UTF-8 JSON or has the wrong top-level type raises
    :class:`ProjectFileError` naming the file and the problem (``hint``, if given, is appended: what to do).
    """
    path = Path(path)
    suffix = f"; {hint}" if hint else ""
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        raise
    except OSError as error:
        raise ProjectFileError(f"{path}: cannot be read ({error.strerror or error}){suffix}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ProjectFileError(f"{path}: not valid JSON (not UTF-8 text: byte {error.start} "
                               f"cannot be decoded){suffix}") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        problem = "the file is empty" if not text.strip() else \
            f"line {error.lineno} column {error.colno}: {error.msg}"
        raise ProjectFileError(f"{path}: not valid JSON ({problem}); the file may be truncated or "
                               f"damaged{suffix}") from None
    except RecursionError:
        raise ProjectFileError(f"{path}: not valid JSON (nested too deeply){suffix}") from None
    if expected is not None and not isinstance(value, expected):
        raise ProjectFileError(f"{path}: expected {_JSON_TYPES.get(expected, expected.__name__)}, found "
                               f"{_JSON_TYPES.get(type(value), type(value).__name__)}{suffix}")
    return value
