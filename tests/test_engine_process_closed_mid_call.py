"""The engine process closed (the last widget went) while a call waits for the child: the call reports
EngineDied, not an AttributeError from the child reference that close() cleared."""
from __future__ import annotations

import threading

import pytest


class CloseWhileConnecting(threading.Event):
    """The accept event of an EngineProcess whose first wait sees the process closed meanwhile (as a widget
    closing in napari's thread would do while a worker thread's call waits for the child to connect)."""

    def __init__(self, engine):
        super().__init__()
        self.engine, self.closed = engine, False

    def wait(self, timeout=None):
        if not self.closed:
            self.closed = True
            self.engine.close()
            return False
        return super().wait(timeout)


def test_a_call_whose_engine_is_closed_while_connecting_reports_engine_died():
    from maskdistill_napari._engine_process import EngineDied, EngineProcess

    engine = EngineProcess()
    engine._accepted = CloseWhileConnecting(engine)
    try:
        with pytest.raises(EngineDied, match="did not start"):
            engine.call("category_table", "nowhere")
        assert engine._process is None  # nothing left running
    finally:
        engine.close()
