"""How responsive napari stays while the MaskDistill widget runs the engine in its worker thread.

A QTimer asks to fire every 10 ms on the GUI thread; how late each tick arrives is the event-loop latency a
user feels (a click or a repaint waits that long). The run is a real ``engine.orchestration.pipeline.run`` started from
the widget's Run button on 6 example photos with the offline DINOv2 weights at input size 224.

    xvfb-run -a .venv/bin/python -m benchmarks.gui_latency      # or without xvfb-run: starts a virtual display

Prints a table and writes runs/benchmark/gui_latency.json. Each configuration runs in its own process.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "images"
OUT = ROOT / "runs" / "benchmark" / "gui_latency.json"
TICK_MS = 10
CONFIGS = {"torch threads = cores (default)": None, "torch threads = 1": "1"}


def measure(images: int, input_size: int) -> dict:
    """One run in this process: latency percentiles of the GUI thread while the worker runs."""
    import napari
    import numpy as np
    from qtpy.QtCore import QElapsedTimer, QTimer

    from maskdistill_napari._widget import MaskDistillWidget

    work = Path(tempfile.mkdtemp(prefix="gui_latency_"))
    folder = work / "images"
    folder.mkdir()
    for path in sorted(EXAMPLES.glob("*.jpg"))[:images]:
        shutil.copy(path, folder / path.name)
    viewer = napari.Viewer(show=True)
    widget = MaskDistillWidget(viewer)
    viewer.window.add_dock_widget(widget)
    panel = widget.run_panel
    panel.image_folder.setText(str(folder))
    panel.project_folder.setText(str(work / "project"))
    panel.input_size.setValue(input_size)
    panel.num_classes.setValue(4)
    panel.device.setCurrentText("cpu")

    app = napari.qt.get_qapp()
    while widget.busy:  # the widget loads the engine (and torch) in its worker first; not part of the run
        app.processEvents()
        time.sleep(0.01)
    clock, lateness, last = QElapsedTimer(), [], [None]
    clock.start()

    def tick():
        now = clock.nsecsElapsed() / 1e6
        if last[0] is not None and panel.running:
            lateness.append(max(0.0, now - last[0] - TICK_MS))
        last[0] = now

    timer = QTimer()
    timer.setTimerType(0)  # Qt.PreciseTimer
    timer.timeout.connect(tick)
    timer.start(TICK_MS)
    start = time.perf_counter()
    panel.start()
    while panel.running:
        app.processEvents()
        time.sleep(0.001)
    seconds = time.perf_counter() - start
    timer.stop()
    status = panel.status.text()
    viewer.close()
    shutil.rmtree(work, ignore_errors=True)
    values = np.array(lateness or [0.0])
    return {"images": images, "input_size": input_size, "run_seconds": round(seconds, 2), "ticks": len(lateness),
            "p50_ms": round(float(np.percentile(values, 50)), 1), "p95_ms": round(float(np.percentile(values, 95)), 1),
            "max_ms": round(float(values.max()), 1), "status": status}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=6)
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--one", action="store_true", help="measure in this process and print JSON (internal)")
    args = parser.parse_args(argv)
    if args.one:
        print("RESULT " + json.dumps(measure(args.images, args.input_size)), flush=True)
        return
    results = {}
    for name, threads in CONFIGS.items():
        env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
        if threads:
            env["MASKDISTILL_THREADS"] = threads
        command = [sys.executable, "-m", "benchmarks.gui_latency", "--one", "--images", str(args.images),
                   "--input-size", str(args.input_size)]
        if not os.environ.get("DISPLAY"):
            command = ["xvfb-run", "-a"] + command
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800, check=False)
        line = next((row for row in done.stdout.splitlines() if row.startswith("RESULT ")), None)
        if line is None:
            raise RuntimeError(f"{name}: the measurement failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
        results[name] = json.loads(line[len("RESULT "):])
    print(f"GUI event-loop latency while the widget runs the engine ({args.images} images, input "
          f"{args.input_size}, {TICK_MS} ms timer, {os.cpu_count()} CPU cores)")
    print(f"{'configuration':34} {'run s':>7} {'ticks':>6} {'p50 ms':>7} {'p95 ms':>7} {'max ms':>7}")
    for name, r in results.items():
        print(f"{name:34} {r['run_seconds']:7.1f} {r['ticks']:6d} {r['p50_ms']:7.1f} {r['p95_ms']:7.1f} "
              f"{r['max_ms']:7.1f}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"tick_ms": TICK_MS, "cpu_count": os.cpu_count(), "results": results}, indent=1))
    print(f"written: {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
