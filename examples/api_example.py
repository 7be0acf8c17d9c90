"""Run the engine on the example photos from Python and print what it found.

    .venv/bin/python examples/api_example.py [PROJECT_DIR]

Writes the project to runs/api_example/ (or PROJECT_DIR): annotations.json (COCO), overview.png, report.json.
"""
import sys
from collections import Counter
from pathlib import Path

from engine.atomic import read_json
from engine.orchestration.pipeline import RunConfig, run

HERE = Path(__file__).resolve().parent


def print_progress(stage: str, done: int, total: int) -> None:
    print(f"\r{stage}: {done}/{total}", end="\n" if done == total else "", flush=True)


def main(project_dir: Path) -> None:
    config = RunConfig(num_classes=4, proposals="ncut", embedding="crop_cls")
    result = run(HERE / "images", project_dir, config, progress=print_progress)
    print(f"{result.images} images, {result.masks} masks, {result.clusters} clusters "
          f"(silhouette suggests K = {result.suggested_k})")
    clusters = read_json(project_dir / "clusters.json")
    truth = read_json(HERE / "categories.json")
    entries = {e["image_id"]: e["relative_path"] for e in read_json(project_dir / "images.json")}
    for cluster in clusters["clusters"]:
        images = [entries[image_id] for image_id, _ in cluster["representatives"]]
        categories = Counter(obj["category"] for name in images for obj in truth[name][:1])
        print(f"  {cluster['name']}: {cluster['size']} masks; representatives from {dict(categories)}")
    print(f"COCO: {result.annotations}\noverview: {result.overview}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE.parent / "runs" / "api_example")
