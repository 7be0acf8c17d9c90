"""Scale on one machine: seconds per image and peak memory of each engine stage at growing folder sizes, and
how long the review's GUI operations take on the largest project.

    .venv/bin/python -m benchmarks.scale [--out runs/benchmark-scale] [--sizes 1000,5000] [--input-size 112]
                                         [--image-size 96] [--weights random] [--embedding pooled]

For each size a folder of generated images (benchmarks/synthetic.py, ``--image-size`` px, with COCO ground
truth) is made once, then every stage runs in a fresh process of its own, so its peak resident memory
(VmHWM) is its own: ``run`` (the whole pipeline), ``distill`` and ``predict`` (re-run on the finished
project), ``export``, ``evaluate`` (the final model against the ground truth), ``gui`` (the engine calls
the napari widget makes, below) and ``import`` (the ground truth as corrections to review; last, as it
changes the project). Memory should not grow with the number of images, nor the time per image.

GUI operations, timed through the engine calls the widget makes, in a fresh process like a newly started
napari:
  open    open_project, the category table (twice: the view, then the categories panel), the first image's
          layer data, the mask count per category (engine.api.category_sizes)
  rename  rename_category, then the panel's refresh: category table + category_sizes
  jump    the first "next low-confidence": the project-wide queue (engine.api.low_confidence_objects) and
          the layer data of the image it points to
"open" is timed twice: the first open after a run (the project index, index.sqlite, is built then if the
run did not leave one) and a later open (index on disk). ``widget`` times the same three through the napari
widget itself (from the handler call until its task queue is idle and the image is on screen), under
``xvfb-run`` when there is no display; it is skipped without either.

Prints a table and writes OUT/results.json: ``peak_rss_mb`` and ``seconds_per_image`` keyed by size (the
largest of the stages / the sum over the stages), ``stages`` (per size and stage), ``gui`` (open_s,
rename_s, jump_s on the largest size; ``gui_widget`` the same through the widget) and ``targets``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

STAGES = ("run", "distill", "predict", "export", "evaluate", "gui", "widget", "import")
GUI_STAGES = ("gui", "widget")  # timings of the review, not engine stages over the folder
TARGETS = {"peak_rss_growth_max": 0.10, "seconds_per_image_growth_max": 0.10, "open_s_max": 5.0,
           "rename_s_max": 0.2, "jump_s_max": 0.2}


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM: its own since exec, not its parent's)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


# -- the data ---------------------------------------------------------------------------------------------
def write_folder(folder: Path, n_images: int, image_size: int, seed: int = 2) -> Path:
    """``n_images`` generated images in folder/images and their COCO ground truth, one image in memory at a
    time; kept between runs (a marker names what was made)."""
    from PIL import Image

    from benchmarks.synthetic import CATEGORIES, _generate_one, to_coco

    marker = folder / "made.json"
    made = {"images": n_images, "size": image_size, "seed": seed}
    if marker.exists() and json.loads(marker.read_text()) == made:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "images").mkdir(parents=True)
    images, annotations = [], []
    for index in range(n_images):
        sample = _generate_one(index, seed, image_size)
        Image.fromarray(sample.image).save(folder / "images" / sample.name, compress_level=1)
        one = to_coco([sample])
        image_id = index + 1
        images.append({**one["images"][0], "id": image_id})
        annotations += [{**a, "id": len(annotations) + k + 1, "image_id": image_id}
                        for k, a in enumerate(one["annotations"])]
    document = {"images": images, "annotations": annotations,
                "categories": [{"id": i, "name": n, "supercategory": "object"} for i, n in enumerate(CATEGORIES, 1)]}
    (folder / "ground_truth.json").write_text(json.dumps(document))
    marker.write_text(json.dumps(made))
    return folder


# -- one stage, in its own process -----------------------------------------------------------------------
def stage_child(stage: str, data: Path, project: Path, args) -> dict:
    """Run one stage here and return its seconds (the engine already imported, as in a napari session or a
    long script) and this process's peak memory."""
    import engine.orchestration.pipeline  # noqa: F401
    import engine.output.evaluation  # noqa: F401 - imports (torch among them) are not the stage's work
    from engine import api

    start = time.perf_counter()
    extra = {}
    if stage == "run":
        from benchmarks.synthetic import CATEGORIES

        config = api.RunConfig(weights=args.weights, input_size=args.input_size, num_classes=len(CATEGORIES),
                               embedding=args.embedding, batch_size=16, device="cpu")
        api.run(data / "images", project, config)
    elif stage == "distill":
        api.distill(project, device="cpu")
    elif stage == "predict":
        api.predict(project)
    elif stage == "export":
        api.export_project(project)
    elif stage == "evaluate":
        extra = {"miou": round(api.evaluate_project(project, data / "ground_truth.json", "predictions")["miou"], 4)}
    elif stage == "import":
        extra = {"imported": api.import_annotations(project, data / "ground_truth.json")["images"]}
    elif stage == "gui":
        extra = gui_timings(project)
    elif stage == "widget":
        extra = widget_timings(project)
    else:
        raise ValueError(f"unknown stage {stage!r}")
    return {"seconds": round(time.perf_counter() - start, 3), "peak_rss_mb": peak_rss_mb(), **extra}


def gui_timings(project: Path) -> dict:
    """The engine calls of the napari widget's open, rename and low-confidence jump, timed (see the module
    docstring); the first open with the project index as the run left it, then again with it on disk."""
    from engine import api
    from engine.state.project_index import INDEX_NAME, forget_indexes

    def open_project() -> tuple:
        _, config, entries, clusters = api.open_project(project)
        _ = api.label_state(project, clusters).table  # the view's category table
        images = api.ImageSource.of_project(config)
        layer_data(images, entries[0])
        _ = api.label_state(project, clusters).table  # the categories panel refreshes it
        api.category_sizes(project)
        return images, entries, clusters

    def layer_data(images, entry: dict) -> None:  # what maskdistill_napari._layers.load_image_data reads
        images.load(entry)
        api.image_objects(project, entry["image_id"]).as_dicts()

    had_index = (project / INDEX_NAME).exists()
    first_open = _timed(open_project)
    forget_indexes()  # a new napari: nothing in memory, the index on disk
    (images, entries, clusters), open_s = _timed(open_project, result=True)
    table = api.label_state(project, clusters).table
    category = next(c for c in table.categories if c.merged_into is None and not c.discarded)

    def rename() -> None:
        api.rename_category(project, category.id, f"{category.name}_renamed")
        _ = api.label_state(project, clusters).table
        api.category_sizes(project)

    def jump() -> None:
        image_id, _, _ = api.low_confidence_objects(project)[0]
        layer_data(images, next(e for e in entries if e["image_id"] == image_id))

    return {"open_first_s": round(first_open, 3), "index_left_by_run": had_index, "open_s": round(open_s, 3),
            "rename_s": round(_timed(rename), 3), "jump_s": round(_timed(jump), 3)}


def widget_timings(project: Path) -> dict:
    """The same three operations through the napari widget itself (needs a display: run under xvfb-run),
    each timed from the handler call until the widget's task queue is idle and the result is on screen."""
    import napari

    from maskdistill_napari._engine_process import engine_process
    from maskdistill_napari._widget import MaskDistillWidget

    viewer = napari.Viewer(show=True)
    widget = MaskDistillWidget(viewer)
    viewer.window.add_dock_widget(widget)
    app = napari.qt.get_qapp()

    def until_idle(start: float, shown: bool = True) -> float:
        while widget.busy or (shown and widget.view.current is None):
            app.processEvents()
            time.sleep(0.002)
        app.processEvents()
        return round(time.perf_counter() - start, 3)

    until_idle(time.perf_counter(), shown=False)
    engine_process().wait_ready()  # the engine process loads torch when the widget opens: not part of an open
    start = time.perf_counter()
    widget.open_project(str(project))
    open_s = until_idle(start)
    panel = widget.categories
    category = next(c for c in widget.view.table.categories if c.merged_into is None and not c.discarded)
    start = time.perf_counter()
    panel.select(category.id)  # the panel loads the category's example crops in its worker
    select_s = until_idle(start)
    panel.name.setText(f"{category.name}_widget")
    start = time.perf_counter()
    panel.rename()
    rename_s = until_idle(start)
    start = time.perf_counter()
    widget.review.next_low_confidence()
    jump_s = until_idle(start)
    start = time.perf_counter()
    widget.review.next_low_confidence()
    next_jump_s = until_idle(start)
    viewer.close()
    return {"open_s": open_s, "select_category_s": select_s, "rename_s": rename_s, "jump_s": jump_s,
            "next_jump_s": next_jump_s}


def _timed(function, result: bool = False):
    start = time.perf_counter()
    value = function()
    seconds = time.perf_counter() - start
    return (value, seconds) if result else seconds


def run_stage(stage: str, data: Path, project: Path, args) -> dict:
    display = []
    if stage == "widget" and not os.environ.get("DISPLAY"):
        if shutil.which("xvfb-run") is None:
            return {"skipped": "no display and no xvfb-run"}
        display = ["xvfb-run", "-a"]
    command = display + [sys.executable, "-m", "benchmarks.scale", "--stage", stage, "--data", str(data),
               "--project", str(project), "--weights", args.weights, "--input-size", str(args.input_size),
               "--embedding", args.embedding]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"stage {stage} on {project} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure_size(n_images: int, args, report) -> dict:
    data = write_folder(args.out / f"data_{n_images}", n_images, args.image_size)
    project = args.out / f"project_{n_images}"
    if "run" in args.stages:  # a fresh project; other stages alone work on the one left by an earlier run
        shutil.rmtree(project, ignore_errors=True)
    results = {}
    for stage in args.stages:
        results[stage] = run_stage(stage, data, project, args)
        if "seconds" in results[stage]:
            results[stage]["seconds_per_image"] = round(results[stage]["seconds"] / n_images, 5)
        report(f"{n_images} images, {stage}: {results[stage]}")
    return results


# -- the report ------------------------------------------------------------------------------------------
def summarise(stages: dict, args) -> dict:
    sizes = sorted(stages, key=int)
    measured = [s for s in STAGES if all(s in stages[n] and "seconds" in stages[n][s] for n in sizes)]
    engine_stages = [s for s in measured if s not in GUI_STAGES]
    peak = {n: max(stages[n][s]["peak_rss_mb"] for s in engine_stages) for n in sizes}
    per_image = {n: round(sum(stages[n][s]["seconds"] for s in engine_stages) / int(n), 5) for n in sizes}
    results = {"config": {"input_size": args.input_size, "image_size": args.image_size, "weights": args.weights,
                          "embedding": args.embedding, "cpu_count": os.cpu_count()},
               "peak_rss_mb": peak, "seconds_per_image": per_image, "stages": stages, "targets": TARGETS}
    largest = sizes[-1]
    if "gui" in measured:
        results["gui"] = {k: stages[largest]["gui"][k] for k in ("open_s", "rename_s", "jump_s", "open_first_s")}
        results["gui"]["images"] = int(largest)
    if "widget" in measured:
        results["gui_widget"] = {**{k: stages[largest]["widget"][k] for k in ("open_s", "rename_s", "jump_s")},
                                 "images": int(largest)}
    if len(sizes) > 1:
        small, large = sizes[0], sizes[-1]
        results["growth"] = {
            "peak_rss": round(peak[large] / peak[small] - 1, 4),
            "seconds_per_image": round(per_image[large] / per_image[small] - 1, 4),
            "per_stage_peak_rss": {s: round(stages[large][s]["peak_rss_mb"] / stages[small][s]["peak_rss_mb"] - 1, 4)
                                   for s in measured},
            "per_stage_seconds_per_image": {
                s: round(stages[large][s]["seconds_per_image"] / stages[small][s]["seconds_per_image"] - 1, 4)
                for s in engine_stages}}
    return results


def table(results: dict) -> str:
    stages = results["stages"]
    sizes = sorted(stages, key=int)
    names = [s for s in STAGES if all("seconds" in stages[n].get(s, {}) for n in sizes)]
    config = results["config"]
    lines = [f"generated {config['image_size']} px images, input size {config['input_size']}, weights "
             f"{config['weights']} (speed and memory only), embedding {config['embedding']}, "
             f"{config['cpu_count']} CPU cores",
             f"{'stage':<10}" + "".join(f"{n + ' s/image':>16}{n + ' peak MB':>16}" for n in sizes)]
    for stage in names:
        row = f"{stage:<10}"
        for n in sizes:
            entry = stages[n][stage]
            row += f"{entry['seconds_per_image']:>16.4f}{entry['peak_rss_mb']:>16.0f}"
        lines.append(row)
    lines.append(f"{'all':<10}" + "".join(f"{results['seconds_per_image'][n]:>16.4f}{results['peak_rss_mb'][n]:>16.0f}"
                                          for n in sizes))
    if "growth" in results:
        growth = results["growth"]
        lines.append(f"growth {sizes[0]} -> {sizes[-1]}: peak memory {growth['peak_rss'] * 100:+.1f} %, "
                     f"seconds per image {growth['seconds_per_image'] * 100:+.1f} % (targets: within 10 %)")
    if "gui" in results:
        gui = results["gui"]
        lines.append(f"GUI on {gui['images']} images, engine calls: open {gui['open_s']:.2f} s (first open after "
                     f"the run {gui['open_first_s']:.2f} s), rename {gui['rename_s'] * 1000:.0f} ms, next "
                     f"low-confidence {gui['jump_s'] * 1000:.0f} ms (targets: open <= 5 s, rename and jump <= 200 ms)")
    if "gui_widget" in results:
        gui = results["gui_widget"]
        lines.append(f"GUI on {gui['images']} images, through the widget: open {gui['open_s']:.2f} s, rename "
                     f"{gui['rename_s'] * 1000:.0f} ms, next low-confidence {gui['jump_s'] * 1000:.0f} ms")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/benchmark-scale"))
    parser.add_argument("--sizes", default="1000,5000", help="folder sizes, comma-separated")
    parser.add_argument("--input-size", type=int, default=112, help="shorter side fed to the backbone")
    parser.add_argument("--image-size", type=int, default=96, help="side of the generated images")
    parser.add_argument("--weights", default="random",
                        help="'random' (default: speed and memory do not depend on the weights) or a checkpoint")
    parser.add_argument("--embedding", default="pooled",
                        help="mask embedding (default pooled: no extra backbone pass per mask)")
    parser.add_argument("--stages", default=",".join(STAGES), help=f"some of {','.join(STAGES)}, in this order")
    parser.add_argument("--stage", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--project", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.stages = [s for s in STAGES if s in args.stages.split(",")]
    if args.stage is not None:
        print(json.dumps(stage_child(args.stage, args.data, args.project, args)))
        return 0
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    sizes = [int(n) for n in args.sizes.split(",")]
    previous = args.out / "results.json"  # stages measured by an earlier call (e.g. --stages widget) are kept
    stages = json.loads(previous.read_text())["stages"] if previous.exists() and "run" not in args.stages else {}
    for n in sizes:
        stages.setdefault(str(n), {}).update(measure_size(n, args, lambda line: print(line, flush=True)))
    results = summarise(stages, args)
    from engine.atomic import atomic_write_json

    atomic_write_json(args.out / "results.json", results)
    print(table(results))
    print(f"\nwritten: {args.out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
