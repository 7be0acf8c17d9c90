"""How responsive napari stays while the MaskDistill widget opens, runs the engine and adds objects by a click.

A QTimer asks to fire every 10 ms on the GUI thread; how late each tick arrives is the event-loop latency a
user feels (a click or a repaint waits that long): a "stall". Each measurement is one process, in phases:

* open: creating the dock widget until its panel is shown (the GUI thread is busy all along: its length is
  what the user waits), then the stalls while the engine process (maskdistill_napari._engine_process) starts
  and loads torch, after the panel is shown; target: no stall over 100 ms.
* run: a real ``engine.api.run`` started from the Run button on 6 example photos with the offline DINOv2
  weights at input size 224.
* results: from the run's end until the first image and its masks are on screen (the widget loads them in
  its worker), and the stalls meanwhile.
* click: "Add object (click)" on each image at the free pixel farthest from every object, from the click
  until the new object is in the Labels layer (the engine call alone in brackets); target: under 300 ms.
* actions: reject, set category and undo of one object on each image, grow (and undo) its smallest object and
  merge (and undo) its two largest, then 6 steps of the low-confidence queue ("next"), from the call until the
  Labels layer (or the object table, or the status line) shows the change; with the GUI thread's stalls
  meanwhile, per action and together (from the call until the engine has confirmed it); target: no stall over
  100 ms.

    xvfb-run -a .venv/bin/python -m benchmarks.gui_latency      # or without xvfb-run: starts a virtual display

Prints a table and writes runs/benchmark/gui_latency.json; each phase's stalls come with the garbage
collections of napari's process on the GUI thread and the draws of its canvas meanwhile (how many, the
longest): a stall's usual suspects.
Each configuration runs in its own process.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "images"
OUT = ROOT / "runs" / "benchmark" / "gui_latency.json"
TICK_MS = 10
STALL_TARGET_MS = 100
CLICK_TARGET_MS = 300
STALL_REPORT_MS = 50  # --stacks: where the GUI thread was during each tick later than this


class StackSampler:
    """The GUI thread's Python stack every 2 ms from a helper thread (--stacks): what a stall was spent on.
    A sample waits for the GIL, so a long C call that holds it shows up as the frame that made it."""

    def __init__(self, clock):
        self.samples: list = []  # (ms on the meter's clock, innermost frames)
        self._clock, self._main = clock, threading.main_thread().ident
        self._running = True
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        import traceback

        while self._running:
            frame = sys._current_frames().get(self._main)
            if frame is not None:
                stack = traceback.extract_stack(frame)[-14:]
                self.samples.append((self._clock.nsecsElapsed() / 1e6, tuple(
                    f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in stack)))
            time.sleep(0.002)

    def stop(self) -> None:
        self._running = False

    def report(self, stalls: list) -> list:
        """Per stall: its phase, length and the most frequent stacks sampled within it."""
        from collections import Counter

        rows = []
        for phase, start, end in stalls:
            inside = Counter(stack for at, stack in self.samples if start <= at <= end)
            rows.append({"phase": phase, "ms": round(end - start - TICK_MS, 1), "samples": sum(inside.values()),
                         "stacks": [[count, list(stack)] for stack, count in inside.most_common(3)]})
        return rows
CONFIGS = {"torch threads = cores (default)": None, "torch threads = 1": "1"}


class StallMeter:
    """Lateness of a 10 ms GUI-thread timer, filed under the phase set when each tick arrived."""

    def __init__(self):
        from qtpy.QtCore import QElapsedTimer, QTimer

        self._phase, self._phase_started, self.lateness, self._last = None, 0.0, {}, None
        self.stalls: list = []  # (phase, start ms, end ms) of each tick later than STALL_REPORT_MS
        self.collections: dict = {}  # phase -> ms of each garbage collection on the GUI thread (gc.callbacks)
        self.draws: dict = {}  # phase -> ms of each draw of napari's canvas (timed_canvas_draws)
        self._gc_started = None
        gc.callbacks.append(self._gc)
        self._clock = QElapsedTimer()
        self._clock.start()
        self._timer = QTimer()
        self._timer.setTimerType(0)  # Qt.PreciseTimer
        self._timer.timeout.connect(self._tick)
        self._timer.start(TICK_MS)

    @property
    def phase(self):
        return self._phase

    @phase.setter
    def phase(self, name) -> None:
        self._phase, self._phase_started = name, self._clock.nsecsElapsed() / 1e6

    def _tick(self) -> None:
        """File the tick's lateness under the phase; a tick already due when the phase began counts only from
        then (the wait before it belongs to what ran before)."""
        now = self._clock.nsecsElapsed() / 1e6
        if self._last is not None and self.phase is not None:
            due = max(self._last + TICK_MS, self._phase_started)
            late = max(0.0, now - due)
            self.lateness.setdefault(self.phase, []).append(late)
            if late > STALL_REPORT_MS:
                self.stalls.append((self.phase, due - TICK_MS, now))
        self._last = now

    def _gc(self, stage: str, info: dict) -> None:
        """Time each garbage collection of napari's process: a full one over its objects is a stall too."""
        if threading.current_thread() is not threading.main_thread():
            return
        if stage == "start":
            self._gc_started = time.perf_counter()
        elif self._gc_started is not None and self.phase is not None:
            self.collections.setdefault(self.phase, []).append((time.perf_counter() - self._gc_started) * 1000)

    def stop(self) -> None:
        self._timer.stop()
        gc.callbacks.remove(self._gc)

    def summary(self, *phases: str) -> dict:
        """Lateness percentiles of the ticks filed under any of ``phases``."""
        import numpy as np

        ticks = [value for phase in phases for value in self.lateness.get(phase, [])]
        values = np.array(ticks or [0.0])
        collections = [value for phase in phases for value in self.collections.get(phase, [])]
        draws = [value for phase in phases for value in self.draws.get(phase, [])]
        return {"ticks": len(ticks), "p50_ms": round(float(np.percentile(values, 50)), 1),
                "p95_ms": round(float(np.percentile(values, 95)), 1), "max_ms": round(float(values.max()), 1),
                "gc_count": len(collections), "gc_max_ms": round(max(collections, default=0.0), 1),
                "draw_count": len(draws), "draw_max_ms": round(max(draws, default=0.0), 1)}


def timed_canvas_draws(meters: list) -> None:
    """Time every draw of a vispy scene canvas (napari's) from now on, filed under the phase of ``meters[0]``
    once there is one: the draw is the other usual suspect of a stall. Before the viewer is made, as vispy
    connects a canvas's ``on_draw`` when the canvas is created."""
    from vispy.scene import SceneCanvas

    original = SceneCanvas.on_draw

    def on_draw(canvas, event):
        start = time.perf_counter()
        original(canvas, event)
        if meters and meters[0].phase is not None:
            meters[0].draws.setdefault(meters[0].phase, []).append((time.perf_counter() - start) * 1000)

    SceneCanvas.on_draw = on_draw


def pump_until(app, done, timeout: float = 600.0) -> float:
    """Process Qt events until ``done()``; the seconds it took."""
    start = time.perf_counter()
    while not done():
        if time.perf_counter() - start > timeout:
            raise TimeoutError(f"gave up after {timeout:g} s")
        app.processEvents()
        time.sleep(0.001)
    return time.perf_counter() - start


def settle(app, seconds: float = 0.3) -> None:
    """Let the window finish drawing what came before (an image switch) so that it is not filed under the next
    action."""
    end = time.perf_counter() + seconds
    pump_until(app, lambda: time.perf_counter() > end)


def free_spot(labels):
    """(row, col) farthest from every object, or None when the objects cover the image."""
    import numpy as np
    from scipy import ndimage

    free = np.asarray(labels) == 0
    if not free.any():
        return None
    return np.unravel_index(int(np.argmax(ndimage.distance_transform_edt(free))), free.shape)


def measure_clicks(app, widget, meter) -> list:
    """One "Add object" click per image; (click to shown, engine call) seconds of each that added one."""
    view, review = widget.view, widget.review
    review.add_object_button.setChecked(True)
    meter.phase = "click"
    timings = []
    for position in range(len(view.entries)):
        view.show(position)
        pump_until(app, lambda position=position: not widget.busy and view.position == position)
        settle(app)
        spot = free_spot(view.labels_layer.data)
        if spot is None:
            continue
        depth = len(review.undo_stack)
        start = time.perf_counter()
        review.add_object_at(spot)
        pump_until(app, lambda depth=depth, spot=spot: not widget.busy and len(review.undo_stack) > depth
                   and view.labels_layer.data[spot] == review.undo_stack[-1]["instance_id"])
        timings.append((time.perf_counter() - start, review.last_add_seconds))
    meter.phase = None
    review.add_object_button.setChecked(False)
    return timings


def measure_object_actions(app, widget, meter) -> dict:
    """Reject + undo and set category + undo of the first object of each image: per action the ms from the call
    until the view shows the change (median, max) and the stalls from the call until the engine is done."""
    import numpy as np

    view = widget.view
    timings: dict = {"reject": [], "category": [], "undo": [], "grow": [], "merge": [], "next": []}

    def timed(action: str, call, shown) -> None:
        settle(app, 0.2)  # a person's pause between two actions
        meter.phase = f"action {action}"  # the stalls of the actions alone, not of switching images between them
        start = time.perf_counter()
        call()
        pump_until(app, shown)
        timings[action].append((time.perf_counter() - start) * 1000)
        pump_until(app, lambda: not widget.busy)
        meter.phase = None

    for position in range(len(view.entries)):
        view.show(position)
        pump_until(app, lambda position=position: not widget.busy and view.position == position)
        settle(app)
        if not view.current["classes"]:
            continue
        act_on_object(app, widget, min(view.current["classes"]), timed)
        edit_objects(app, widget, timed)
    view.show(0)
    pump_until(app, lambda: not widget.busy and view.position == 0)
    review = widget.review
    for _ in range(min(6, len(view.entries))):  # the low-confidence queue, one step at a time (its first step
        # reads the queue from the project index)
        said = review.status.text()
        timed("next", review.next_low_confidence, lambda said=said: review.status.text() != said
              and not widget.busy)
    return {action: {"count": len(values), "median_ms": round(float(np.median(values or [np.nan])), 1),
                     "max_ms": round(float(np.max(values or [np.nan])), 1),
                     "stalls": meter.summary(f"action {action}")} for action, values in timings.items()}


def act_on_object(app, widget, target: int, timed) -> None:
    """Reject and undo, set category and undo on object ``target`` of the image on screen, each ``timed``."""
    import numpy as np

    view, review = widget.view, widget.review
    spot = tuple(int(v[0]) for v in np.nonzero(np.asarray(view.labels_layer.data) == target))
    view.select_object(target)
    timed("reject", review.reject_selected, lambda: view.labels_layer.data[spot] == 0)
    timed("undo", review.undo, lambda: view.labels_layer.data[spot] == target)
    view.select_object(target)
    other = next(c.id for c in view.table.categories
                 if c.id != view.current["classes"][target] and view.table.resolve(c.id) is not None)
    review.category.setCurrentIndex(review.category.findData(other))
    timed("category", review.set_category, lambda: view.current["classes"].get(target) == other)
    timed("undo", review.undo, lambda: view.current["classes"].get(target) != other)


def edit_objects(app, widget, timed) -> None:
    """Grow the smallest object of the image on screen and undo it; merge its two largest and undo it: each
    ``timed`` until the layer shows the engine's change (these go through the engine, then the layer)."""
    import numpy as np

    view, review = widget.view, widget.review
    ids = sorted(view.current["classes"], key=lambda k: int((np.asarray(view.labels_layer.data) == k).sum()))
    if not ids:
        return
    depth = len(review.undo_stack)
    view.select_object(ids[0])
    timed("grow", review.grow_selected, lambda: len(review.undo_stack) > depth
          or review.status.text().startswith("Growing"))
    if len(review.undo_stack) > depth:
        timed("undo", review.undo, lambda: len(review.undo_stack) == depth)
    if len(ids) < 2:
        return
    view.select_object(ids[-1])
    view.toggle_selected(ids[-2])
    timed("merge", review.merge_selected, lambda: len(review.undo_stack) > depth
          or review.status.text().startswith("Merging"))
    if len(review.undo_stack) > depth:
        timed("undo", review.undo, lambda: len(review.undo_stack) == depth)


def measure(images: int, input_size: int, stacks: bool = False) -> dict:
    """One configuration in this process: opening, run, results and clicks, with the GUI thread's stalls."""
    import napari
    import numpy as np

    meters: list = []
    timed_canvas_draws(meters)
    work = Path(tempfile.mkdtemp(prefix="gui_latency_"))
    folder = work / "images"
    folder.mkdir()
    for path in sorted(EXAMPLES.glob("*.jpg"))[:images]:
        shutil.copy(path, folder / path.name)
    viewer = napari.Viewer(show=True)
    app = napari.qt.get_qapp()
    pump_until(app, lambda: viewer.window._qt_window.isVisible())  # napari itself, not the plugin
    meter = StallMeter()
    meters.append(meter)
    sampler = StackSampler(meter._clock) if stacks else None

    start = time.perf_counter()
    from maskdistill_napari._engine_process import engine_process
    from maskdistill_napari._widget import MaskDistillWidget  # what opening the plugin imports

    widget = MaskDistillWidget(viewer)
    viewer.window.add_dock_widget(widget)
    pump_until(app, widget.isVisible)
    open_seconds = time.perf_counter() - start
    meter.phase = "open"
    ready = threading.Event()  # the engine process loads torch meanwhile; napari's process never does
    threading.Thread(target=lambda: (engine_process().wait_ready(), ready.set()), daemon=True).start()
    engine_seconds = pump_until(app, lambda: not widget.busy and ready.is_set())
    pump_until(app, lambda: time.perf_counter() - start > open_seconds + engine_seconds + 0.5)  # settle

    panel = widget.run_panel
    panel.image_folder.setText(str(folder))
    panel.project_folder.setText(str(work / "project"))
    panel.input_size.value = input_size  # magicgui widgets (the engine's settings form)
    panel.num_classes.value = 4
    panel.device.value = "cpu"
    meter.phase = "run"
    run_start = time.perf_counter()
    panel.start()
    pump_until(app, lambda: not panel.running)
    run_seconds = time.perf_counter() - run_start
    meter.phase = "results"
    results_seconds = pump_until(app, lambda: "masks" in viewer.layers and not widget.busy)
    status = panel.status.text()
    clicks = measure_clicks(app, widget, meter)
    actions = measure_object_actions(app, widget, meter)
    meter.stop()
    stalled = sampler.report(meter.stalls) if sampler else []
    if sampler:
        sampler.stop()
    viewer.close()
    shutil.rmtree(work, ignore_errors=True)
    shown = np.array([c[0] for c in clicks] or [np.nan]) * 1000
    engine = np.array([c[1] for c in clicks] or [np.nan]) * 1000
    return {"images": images, "input_size": input_size, "status": status,
            "open": {"panel_shown_s": round(open_seconds, 2), "engine_loaded_s": round(engine_seconds, 2),
                     **meter.summary("open")},
            "run": {"seconds": round(run_seconds, 2), **meter.summary("run")},
            "results": {"shown_s": round(results_seconds, 2), **meter.summary("results")},
            "click": {"clicks": len(clicks), "shown_median_ms": round(float(np.median(shown)), 1),
                      "shown_max_ms": round(float(np.max(shown)), 1),
                      "engine_median_ms": round(float(np.median(engine)), 1), **meter.summary("click")},
            "actions": {**actions, **meter.summary(*(f"action {action}" for action in actions))},
            **({"stall_stacks": stalled} if sampler else {})}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=6)
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--stacks", action="store_true",
                        help=f"sample the GUI thread's stack and report it for each stall over {STALL_REPORT_MS} ms")
    parser.add_argument("--one", action="store_true", help="measure in this process and print JSON (internal)")
    args = parser.parse_args(argv)
    if args.one:
        print("RESULT " + json.dumps(measure(args.images, args.input_size, args.stacks)), flush=True)
        return
    results = {}
    for name, threads in CONFIGS.items():
        env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
        if threads:
            env["MASKDISTILL_THREADS"] = threads
        command = [sys.executable, "-m", "benchmarks.gui_latency", "--one", "--images", str(args.images),
                   "--input-size", str(args.input_size)] + (["--stacks"] if args.stacks else [])
        if not os.environ.get("DISPLAY"):
            command = ["xvfb-run", "-a"] + command
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800, check=False)
        line = next((row for row in done.stdout.splitlines() if row.startswith("RESULT ")), None)
        if line is None:
            raise RuntimeError(f"{name}: the measurement failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
        results[name] = json.loads(line[len("RESULT "):])
    print_table(results, args)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"tick_ms": TICK_MS, "cpu_count": os.cpu_count(), "stall_target_ms": STALL_TARGET_MS,
                               "click_target_ms": CLICK_TARGET_MS, "results": results}, indent=1))
    print(f"written: {OUT.relative_to(ROOT)}")


def print_table(results: dict, args) -> None:
    print(f"GUI thread of napari with the MaskDistill widget ({args.images} images, input {args.input_size}, "
          f"{TICK_MS} ms timer, {os.cpu_count()} CPU cores); stalls: p50 / p95 / max ms")
    print(f"{'configuration':34} {'phase':8} {'seconds':>8} {'stalls p50/p95/max ms':>24}  note")
    for name, r in results.items():
        rows = [("open", r["open"]["panel_shown_s"], r["open"],
                 f"panel shown; then the engine process loaded in {r['open']['engine_loaded_s']:.1f} s"),
                ("run", r["run"]["seconds"], r["run"], r["status"][:60]),
                ("results", r["results"]["shown_s"], r["results"], "run's end -> first image and masks shown"),
                ("click", r["click"]["shown_median_ms"] / 1000, r["click"],
                 f"median of {r['click']['clicks']} clicks -> object shown (max {r['click']['shown_max_ms']:.0f} "
                 f"ms; engine {r['click']['engine_median_ms']:.0f} ms)"),
                ("actions", r["actions"]["reject"]["median_ms"] / 1000, r["actions"],
                 "call -> shown, median / max ms (stalls p50 / max): " + ", ".join(
                     f"{a} {r['actions'][a]['median_ms']:.0f} / {r['actions'][a]['max_ms']:.0f} "
                     f"({r['actions'][a]['stalls']['p50_ms']:.0f} / {r['actions'][a]['stalls']['max_ms']:.0f}; "
                     f"gc <= {r['actions'][a]['stalls'].get('gc_max_ms', 0):.0f}, "
                     f"draw <= {r['actions'][a]['stalls'].get('draw_max_ms', 0):.0f})"
                     for a in ("reject", "category", "undo", "grow", "merge", "next")))]
        for phase, seconds, stalls, note in rows:
            collected = (f"; gc {stalls['gc_count']} x <= {stalls['gc_max_ms']:.0f} ms, draws {stalls['draw_count']} x "
                         f"<= {stalls['draw_max_ms']:.0f} ms") if "gc_count" in stalls else ""
            print(f"{name:34} {phase:8} {seconds:8.2f} {stalls['p50_ms']:7.1f} /{stalls['p95_ms']:6.1f} /"
                  f"{stalls['max_ms']:7.1f}  {note}{collected}")


if __name__ == "__main__":
    main()
