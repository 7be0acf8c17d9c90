"""The engine process's side (``python -m maskdistill_napari._engine_child``; see _engine_process.py).

It reads where to connect from its stdin, connects back to napari's process, loads the engine (torch) at once,
says ("ready",) and then runs one engine call per message: ("call", name, args, kwargs, with_progress) ->
("progress", stage, done, total) ... then ("result", value) or ("error", exception). A ("cancel",) message that
arrives during a call makes the engine raise Cancelled at its next progress report; a napari that is gone ends
the call at its next report, and the child with it. No Qt and no napari are imported here.
"""
from __future__ import annotations

import json
import sys
from multiprocessing.connection import Client


def serve(connection) -> None:
    import engine.api

    engine.api.run  # noqa: B018 - load the pipeline (torch, timm) now, before the first call needs it
    try:
        connection.send(("ready",))
    except OSError:  # napari's process is gone
        return
    while True:
        try:
            message = connection.recv()
        except (EOFError, OSError):  # napari's process closed the connection or is gone
            return
        if message[0] != "call":
            continue  # a cancel that came after its call had ended
        _, name, args, kwargs, with_progress = message
        if with_progress:
            kwargs = {**kwargs, "progress": _reporter(connection)}
        try:
            reply = ("result", getattr(engine.api, name)(*args, **kwargs))
        except NapariGone:
            return
        except Exception as error:  # noqa: BLE001 - every error goes back to the caller, named
            reply = ("error", error)
        try:
            connection.send(reply)
        except OSError:  # napari's process is gone: nobody to answer
            return
        except Exception as error:  # noqa: BLE001 - the result or the error would not pickle
            connection.send(("error", RuntimeError(f"{name}: {type(error).__name__}: {error}")))


class NapariGone(Exception):
    """napari's process closed the connection during a call."""


def _reporter(connection):
    """The progress callback of one call: sends each report, and raises Cancelled once a cancel has come."""
    from engine.api import Cancelled

    cancelled = False

    def report(stage: str, done: int, total: int) -> None:
        nonlocal cancelled
        try:
            while connection.poll():
                cancelled = cancelled or connection.recv()[0] == "cancel"
            if not cancelled:
                connection.send(("progress", stage, done, total))
        except (EOFError, OSError):  # napari's process is gone: stop at this report (the project stays resumable)
            raise NapariGone from None
        if cancelled:
            raise Cancelled(f"during {stage} ({done}/{total})")  # the Run panel says how to resume

    return report


def main() -> None:
    where = json.loads(sys.stdin.readline())
    connection = Client(where["address"], family=where["family"], authkey=bytes.fromhex(where["authkey"]))
    try:
        serve(connection)
    finally:
        connection.close()


if __name__ == "__main__":
    main()
