"""The engine process: the engine calls that load torch run in a child process, never in napari's.

Loading torch holds Python's GIL for 100-200 ms at a time (its C extension initialises without releasing it),
so in napari's process it froze the window whatever thread did it (measured: a 266 ms stall when a run
started). Calls named in ``engine.api.LOADS_TORCH`` (run, distill, split, add object, export, ...) therefore go
to one child process (_engine_child.py), started when the widget opens and kept for the session; everything
else (the category table, the project index, saving an edit) is torch-free and runs in the widget's worker
thread.

The child is a fresh interpreter started as ``python -m maskdistill_napari._engine_child`` (not
multiprocessing's "spawn", which re-runs the user's main script in the child when napari was started from a
script without a ``__main__`` guard); it connects back over a local socket / named pipe with a random key. It
holds no state: the project folder on disk does, so both processes see the same work. Progress comes back as
messages, relayed to the caller's ``progress(stage, done, total)``; a cancel makes the engine raise
``engine.api.Cancelled`` at its next progress report. Results and errors come back pickled (their classes are
torch-free). A child that dies (out of memory, a crash) is reported as an error saying so and replaced by a
fresh one for the next call. Calls are one at a time (a lock): the widget's queue is serial anyway.
"""
from __future__ import annotations

import atexit
import json
import os
import subprocess
import sys
import threading
from multiprocessing.connection import Connection, Listener

POLL_SECONDS = 0.05
CONNECT_SECONDS = 120  # a cold start of Python on a slow disk; the child connects before it loads torch


class EngineDied(RuntimeError):
    """The engine process stopped (or never started): the message says which call it was running."""


class EngineProcess:
    """One child process running engine calls (see the module docstring)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._listener: Listener | None = None
        self._connection: Connection | None = None
        self._accepted = threading.Event()
        self._ready = False  # the child said it has loaded the engine
        self._users = 0  # widgets using it: the child is stopped when the last one closes
        self._users_lock = threading.Lock()  # not _lock, which a call holds for minutes

    def acquire(self) -> None:
        """A widget uses the engine process from now on (cheap: starts nothing)."""
        with self._users_lock:
            self._users += 1

    def release(self) -> None:
        """A widget is done with it; the last one to go stops the child (a call in progress is abandoned: the
        project stays resumable), so no engine outlives the napari windows that used it."""
        with self._users_lock:
            self._users = max(self._users - 1, 0)
            last = self._users == 0
        if last:
            self.close()

    def start(self) -> None:
        """Start the child, which loads torch at once (returns without waiting for it)."""
        with self._lock:
            self._start()

    def _start(self) -> subprocess.Popen[bytes]:
        """The running child, started if needed (callers keep this reference: close() may clear the
        attribute from another thread while a call runs)."""
        if self._process is not None and self._process.poll() is None:
            return self._process
        self._stop()
        key = os.urandom(32)
        family = "AF_PIPE" if sys.platform == "win32" else "AF_UNIX"
        self._listener = Listener(family=family, authkey=key)
        self._accepted.clear()
        self._ready = False
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}  # the same packages
        process = subprocess.Popen([sys.executable, "-m", "maskdistill_napari._engine_child"],
                                   stdin=subprocess.PIPE, env=env)
        self._process = process
        where = {"address": self._listener.address, "family": family, "authkey": key.hex()}
        assert process.stdin is not None  # stdin=PIPE
        process.stdin.write((json.dumps(where) + "\n").encode())
        process.stdin.close()
        listener = self._listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True, name="engine-accept").start()
        return process

    def _accept(self, listener: Listener) -> None:
        try:
            connection = listener.accept()
        except OSError:  # closed before the child connected (stopped, or the child died)
            return
        if listener is self._listener:
            self._connection = connection
            self._accepted.set()
        else:
            connection.close()

    def _connected(self, process: subprocess.Popen[bytes]) -> Connection:
        """The connection to the running child ``process``, waiting for it to connect; raises EngineDied if it
        cannot."""
        waited = 0.0
        while not self._accepted.wait(POLL_SECONDS):
            waited += POLL_SECONDS
            if process.poll() is not None or waited > CONNECT_SECONDS:
                raise EngineDied("The engine process did not start (exit code "
                                 f"{process.poll()}); see the messages above it in the terminal.")
        connection = self._connection
        if connection is None:  # close() ran from another thread after the child connected
            raise EngineDied("The engine process was stopped before it could run the call.")
        return connection

    def call(self, name: str, *args, progress=None, cancel: threading.Event | None = None, **kwargs):
        """``engine.api.<name>(*args, **kwargs)`` in the child; blocks (call it from a worker thread).
        ``progress(stage, done, total)`` is called here as the child reports; ``cancel`` set -> the engine
        raises Cancelled in the child, re-raised here, as is any other error of the call."""
        with self._lock:
            process = self._start()
            try:
                connection = self._connected(process)
                connection.send(("call", name, args, kwargs, progress is not None))
                cancel_sent = False
                while True:
                    if cancel is not None and cancel.is_set() and not cancel_sent:
                        connection.send(("cancel",))
                        cancel_sent = True
                    if not connection.poll(POLL_SECONDS):
                        if process.poll() is not None:
                            raise EOFError
                        continue
                    kind, *payload = connection.recv()
                    if kind == "ready":
                        self._ready = True
                    elif kind == "progress":
                        if progress is not None:
                            progress(*payload)
                    else:
                        break
            except (EOFError, OSError, EngineDied) as error:  # the connection, not the call, failed
                code = self._exit_code()
                self._stop()  # the next call starts a fresh child
                if isinstance(error, EngineDied):
                    raise
                raise EngineDied(f"The engine process stopped while running {name} (exit code {code}: out of "
                                 "memory, or it crashed); the work finished before is kept in the project. "
                                 "Try again.") from None
        if kind == "error":
            raise payload[0]  # the engine's own error (an OSError too), raised here as the call's
        return payload[0]

    def wait_ready(self) -> None:
        """Start the child if needed and wait until it has loaded the engine (benchmarks time the review
        without the child's start-up competing for the CPU)."""
        with self._lock:
            process = self._start()
            try:
                connection = self._connected(process)
                while not self._ready:
                    if connection.poll(POLL_SECONDS):
                        self._ready = connection.recv()[0] == "ready"
                    elif process.poll() is not None:
                        raise EOFError
            except (EOFError, OSError):
                code = self._exit_code()
                self._stop()
                raise EngineDied(f"The engine process stopped while starting (exit code {code}).") from None

    def _exit_code(self) -> int | None:
        """The child's exit code once it has ended (waits a moment: a killed child is reaped asynchronously);
        a negative code is the signal that ended it."""
        try:
            return self._process.wait(2) if self._process is not None else None
        except subprocess.TimeoutExpired:
            return None

    def _stop(self) -> None:
        connection, listener, process = self._connection, self._listener, self._process
        self._connection = self._listener = self._process = None
        self._accepted.clear()
        for closeable in (connection, listener):
            if closeable is not None:
                try:
                    closeable.close()
                except OSError:
                    pass
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()

    def close(self) -> None:
        """Stop the child (a call in progress is abandoned: the project stays resumable)."""
        self._stop()


_shared: EngineProcess | None = None
_shared_lock = threading.Lock()


def engine_process() -> EngineProcess:
    """The engine process of this napari session, shared by its widgets like a thread pool (it holds no state:
    the project folders do); stopped when the last widget closes, or when Python exits."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = EngineProcess()
            atexit.register(_shared.close)
        return _shared
