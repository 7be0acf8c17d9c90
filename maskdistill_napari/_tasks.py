"""Engine calls off the GUI thread, one after another, with results handed back to slots on the GUI thread.

Every engine call of the widget goes through one TaskQueue: runs, retrains and exports (which hold the
project's lock for minutes) as well as saves, category changes and image loads. Running them in order
matters: a correction must be saved before the mask it contains is rejected, a category change must be on
disk before the layers are recoloured, and a Retrain clicked during a Run must wait for the Run instead of
finding the project locked by this very process. Workers never touch layers; the ``on_done`` slot
(connected to the worker's ``returned`` signal, so it runs on the GUI thread) does.

A worker's error is never swallowed: it is shown as a napari notification with the message the engine
raised, emitted as ``failed``, and handed to the caller's ``on_error`` (which puts it in its panel).
"""
from __future__ import annotations

import atexit
import re
from collections import deque

from napari.qt.threading import create_worker
from napari.utils.notifications import show_error
from qtpy.QtCore import QObject, QThreadPool, Signal

from ._engine import without_triton


def _guarded(function, *args, **kwargs):
    """``function(*args, **kwargs)`` in the worker, with triton hidden while the engine loads (_engine.py)."""
    with without_triton():
        return function(*args, **kwargs)


@atexit.register
def _let_running_workers_end() -> None:
    """Python is exiting while a worker still runs (a script that never closed its window): let it end before
    Qt's objects are torn down under it, which would abort the process. Waits only for running workers."""
    pool = QThreadPool.globalInstance()
    if pool is not None:
        pool.waitForDone(10_000)


# errors the engine raises on purpose, their message written for the user (what went wrong, what to do): shown
# as they are; any other kind is a fault, shown with its kind so that a report can name it
USER_ERRORS = (ValueError, LookupError, OSError, RuntimeError)  # RuntimeError: a locked project, an
# engine process that stopped, weights not found
_NUMPY_SCALAR = re.compile(r"np\.(?:float|int|uint|bool_)\d*\(([^()]*)\)")
_LONG_DECIMAL = re.compile(r"(?<![\w.])-?\d+\.\d{3,}(?![\w.])")


def error_message(error: BaseException) -> str:
    """The message of an engine error as a person reads it: no exception class for the errors the engine words
    itself, no ``np.float64(...)`` wrappers, decimals cut to one place."""
    if isinstance(error, KeyError) and len(error.args) == 1 and isinstance(error.args[0], str):
        text = error.args[0]  # str() of a KeyError quotes its message
    else:
        text = str(error) or type(error).__name__
    if not isinstance(error, USER_ERRORS):
        text = f"unexpected {type(error).__name__}: {text}"
    return readable(text)


def readable(text: str) -> str:
    """``np.float64(203.7775)`` -> ``203.8``: numpy's scalar reprs and long decimals in a message, rounded."""
    text = _NUMPY_SCALAR.sub(lambda match: match.group(1), text)
    return _LONG_DECIMAL.sub(lambda match: f"{float(match.group(0)):.1f}", text)


class TaskQueue(QObject):
    """A serial queue of engine calls, each in a napari thread worker."""

    failed = Signal(str)  # a readable message of the last error
    idle = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self._pending: deque = deque()
        self._worker = None
        self._finished_worker = None
        self._closed = False
        self._running_what: str | None = None

    @property
    def busy(self) -> bool:
        return self._worker is not None or bool(self._pending)

    @property
    def waiting_for(self) -> str:
        """What a new task waits for, in words ("the engine to start"), for a status line."""
        return (self._running_what if self._worker is not None and self._running_what else "the task in progress")

    def submit(self, function, *args, on_done=None, on_error=None, on_finished=None, what: str | None = None,
               **kwargs) -> None:
        """Run ``function(*args, **kwargs)`` after the tasks already queued. On the GUI thread afterwards:
        ``on_done(result)`` or ``on_error(message)``, then ``on_finished()``. Ignored once the queue is closed.
        ``what``: the task in words, for the status line of a task queued behind it (:attr:`waiting_for`)."""
        if self._closed:
            return
        self._pending.append((function, args, kwargs, on_done, on_error, on_finished, what))
        self._start_next()

    def close(self) -> None:
        """napari is closing: drop the queued tasks and ignore the result of the running one (the window does
        not wait for it; :func:`_let_running_workers_end` does, at exit)."""
        self._closed = True
        self._pending.clear()

    def _start_next(self) -> None:
        if self._closed or self._worker is not None or not self._pending:
            return
        function, args, kwargs, on_done, on_error, on_finished, self._running_what = self._pending.popleft()
        # _ignore_errors: napari would show the bare exception; _report shows it with context, once
        worker = create_worker(_guarded, function, *args, _start_thread=False, _ignore_errors=True, **kwargs)
        worker.returned.connect(lambda result: self._returned(result, on_done))
        worker.errored.connect(lambda error: self._report(error, on_error))
        worker.finished.connect(lambda: self._on_finished(on_finished))
        self._worker = worker
        worker.start()

    def _returned(self, result, on_done) -> None:
        if on_done is not None and not self._closed:
            on_done(result)

    def _report(self, error: BaseException, on_error) -> None:
        message = error_message(error)
        if not getattr(error, "user_answer", False):  # an edit the image cannot give is no fault (EditRefused)
            show_error(message)
        self.failed.emit(message)
        if on_error is not None and not self._closed:
            on_error(message)

    def _on_finished(self, on_finished) -> None:
        # the worker's thread still emits one more signal after ``finished``: dropping the last reference now
        # could delete its signal object under it (RuntimeError in the thread), so keep it until the next one
        self._finished_worker, self._worker = self._worker, None
        if self._closed:
            return
        if on_finished is not None:
            on_finished()
        self._start_next()
        if not self.busy:
            self.idle.emit()
