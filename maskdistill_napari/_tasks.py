"""Engine calls off the GUI thread, one after another, with results handed back to slots on the GUI thread.

Running them in order matters: a correction must be saved before the mask it contains is rejected, and
a category change must be on disk before the layers are recoloured. Workers never touch layers; the
``on_done`` slot (connected to the worker's ``returned`` signal, so it runs on the GUI thread) does.
"""
from __future__ import annotations

from collections import deque

from napari.qt.threading import create_worker
from qtpy.QtCore import QObject, Signal


class TaskQueue(QObject):
    """A serial queue of engine calls, each in a napari thread worker."""

    failed = Signal(str)  # a readable message of the last error
    idle = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self._pending: deque = deque()
        self._worker = None

    @property
    def busy(self) -> bool:
        return self._worker is not None or bool(self._pending)

    def submit(self, function, *args, on_done=None, on_error=None, **kwargs) -> None:
        """Run ``function(*args, **kwargs)`` after the tasks already queued; ``on_done(result)`` on the GUI thread."""
        self._pending.append((function, args, kwargs, on_done, on_error))
        self._start_next()

    def _start_next(self) -> None:
        if self._worker is not None or not self._pending:
            return
        function, args, kwargs, on_done, on_error = self._pending.popleft()
        worker = create_worker(function, *args, _start_thread=False, _ignore_errors=True, **kwargs)
        if on_done is not None:
            worker.returned.connect(on_done)
        worker.errored.connect(lambda error: self._report(error, on_error))
        worker.finished.connect(self._on_finished)
        self._worker = worker
        worker.start()

    def _report(self, error: Exception, on_error) -> None:
        message = f"{type(error).__name__}: {error}"
        self.failed.emit(message)
        if on_error is not None:  # napari itself shows the error as a notification
            on_error(error)

    def _on_finished(self) -> None:
        self._worker = None
        self._start_next()
        if not self.busy:
            self.idle.emit()
