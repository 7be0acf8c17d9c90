"""The napari manifest: valid, importable, and shipped inside the built wheel."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_manifest_validates_with_imports():
    done = subprocess.run([sys.executable, "-m", "npe2", "validate", "maskdistill-napari", "--imports"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "valid" in (done.stdout + done.stderr).lower()


def test_manifest_name_matches_the_distribution():
    import yaml

    assert yaml.safe_load((ROOT / "napari.yaml").read_text())["name"] == "maskdistill-napari"


def test_wheel_ships_the_manifest(tmp_path):
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
                           "-w", str(tmp_path), "-q"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    wheel = next(tmp_path.glob("maskdistill_napari-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        shipped = archive.read("maskdistill_napari/napari.yaml").decode()
        entry_points = archive.read(next(n for n in archive.namelist() if n.endswith("entry_points.txt"))).decode()
    assert shipped == (ROOT / "napari.yaml").read_text()
    assert "maskdistill-napari = maskdistill_napari:napari.yaml" in entry_points


def test_sample_data_loads_the_example_photos():
    from maskdistill_napari._sample_data import example_images

    layers = example_images()
    assert len(layers) >= 12
    data, meta, kind = layers[0]
    assert kind == "image" and data.ndim == 3 and data.shape[2] == 3 and meta["rgb"]


def test_a_script_that_exits_while_the_engine_still_loads_ends_cleanly(qapp):
    """The widget loads the engine in a worker; a script that opens it and exits at once used to abort (exit
    134, "wrapped C/C++ object ... has been deleted") because Python tore Qt down under the running worker."""
    script = ("import napari\n"
              "from maskdistill_napari._widget import MaskDistillWidget\n"
              "viewer = napari.Viewer(show=False)\n"
              "MaskDistillWidget(viewer)\n"
              "viewer.close()\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "has been deleted" not in done.stderr
