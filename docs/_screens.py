"""What both screenshot scripts share: a napari window with the MaskDistill widget docked, a wait that keeps the
event loop turning until the widget is idle, and a screenshot saved as a small 256-colour PNG."""
from __future__ import annotations

import time
from pathlib import Path


def open_window(size: tuple, dock_width: int):
    """(app, viewer, widget): a shown napari window of ``size`` (w, h) with the widget docked on the right."""
    import napari

    from maskdistill_napari._widget import MaskDistillWidget

    app = napari.qt.get_qapp()
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(*size)
    widget = MaskDistillWidget(viewer)
    dock = viewer.window.add_dock_widget(widget, name="MaskDistill", area="right")
    viewer.window._qt_window.resizeDocks([dock], [dock_width], 1)  # Qt.Horizontal
    return app, viewer, widget


def waiter(app, widget, seconds: float = 600):
    """wait(condition): process events until ``condition()`` (default: the widget is idle), then settle."""
    def wait(condition=lambda: not widget.busy) -> None:
        end = time.time() + seconds
        while not condition():
            app.processEvents()
            time.sleep(0.01)
            if time.time() > end:
                raise TimeoutError("the widget did not finish in time")
        for _ in range(30):
            app.processEvents()
            time.sleep(0.01)
    return wait


def save_screenshot(viewer, path: Path, wait, max_bytes: int = 400_000) -> tuple:
    """The whole window (no notification toasts) as a 256-colour PNG at ``path``, scaled down until it is at most
    ``max_bytes``; returns its (width, height)."""
    from napari._qt.dialogs.qt_notification import NapariQtNotification
    from PIL import Image

    for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
        toast.close()  # the PyQt5 deprecation toast would cover the canvas
    wait()
    image = Image.fromarray(viewer.screenshot(canvas_only=False, flash=False)).convert("RGB")
    scale = 1.0
    while True:
        size = (int(image.width * scale), int(image.height * scale))
        image.resize(size, Image.LANCZOS).quantize(256).save(path, optimize=True)
        if path.stat().st_size <= max_bytes:
            return size
        scale *= 0.85
