"""The plugin reaches the engine only through ``engine.api``, and importing it does not load torch (which
would block napari's GUI thread for seconds when it opens the widget or asks the reader about a folder)."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "maskdistill_napari"


def engine_imports(path: Path) -> list:
    """(line, module) of every import of the engine package in a file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name.split(".")[0] == "engine"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module.split(".")[0] == "engine":
            found += [(node.lineno, node.module if node.module != "engine" else f"engine.{alias.name}")
                      for alias in node.names]
    return found


def test_the_plugin_imports_only_the_engine_facade():
    offending = {f"{path.name}:{line}": module for path in sorted(PLUGIN.glob("*.py"))
                 for line, module in engine_imports(path) if module != "engine.api"}
    assert not offending, f"import these through engine.api instead: {offending}"
    assert any(engine_imports(path) for path in PLUGIN.glob("*.py"))  # the scan does see the lazy imports


def test_importing_the_plugin_loads_neither_torch_nor_the_engine():
    code = ("import sys\n"
            "import maskdistill_napari._widget, maskdistill_napari._reader, maskdistill_napari._writer\n"
            "import maskdistill_napari._sample_data\n"
            "print(sorted(m for m in sys.modules if m == 'torch' or m.split('.')[0] == 'engine'))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", done.stdout


def test_triton_is_hidden_only_while_the_plugin_loads_the_engine():
    """Importing the plugin leaves sys.modules alone; the engine's torch stack loaded in one of the widget's
    tasks keeps triton out (it would crash next to napari's OpenGL canvas), and the placeholder is gone after."""
    code = ("import sys\n"
            "import maskdistill_napari, maskdistill_napari._widget, maskdistill_napari._reader\n"
            "print('after import:', 'triton' in sys.modules)\n"
            "from maskdistill_napari._tasks import _guarded\n"
            "def load():\n"
            "    import timm  # what building a backbone loads: torch, torchvision (which imports triton)\n"
            "    return sys.modules.get('triton', 'absent')\n"
            "print('while loading:', _guarded(load))\n"
            "print('after loading:', 'triton' in sys.modules, 'torchvision' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["after import: False", "while loading: None",
                                        "after loading: False True"], done.stdout


def test_only_the_names_in_loads_torch_load_torch():
    """engine.api.LOADS_TORCH is what the plugin sends to its engine process; every other name of the facade
    must be usable in napari's process without loading torch."""
    code = ("import sys\n"
            "import engine.api as api\n"
            "for name in sorted(set(api.__all__) - api.LOADS_TORCH):\n"
            "    getattr(api, name)\n"
            "    assert 'torch' not in sys.modules, name\n"
            "print('ok')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "ok"
