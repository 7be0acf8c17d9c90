"""What setup.cfg declares against what the code imports: the core install is the engine and the CLI (no napari,
Qt or magicgui), the plugin comes with the napari extra, every third-party module imported is declared, and the
engine imports where fcntl does not exist (Windows)."""
from __future__ import annotations

import ast
import configparser
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GUI = {"napari", "magicgui", "qtpy", "pyqt5", "pyqt6", "pyside2", "pyside6", "npe2", "superqt", "vispy"}
# import name -> distribution, where they differ
DISTRIBUTION_OF = {"pil": "pillow", "skimage": "scikit-image", "sklearn": "scikit-learn"}


def normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_names(lines: str) -> set:
    """Distribution names of a setup.cfg requirement list ("ray[data]>=2.10" -> "ray")."""
    return {normalised(re.match(r"[A-Za-z0-9._-]+", line.strip()).group()) for line in lines.splitlines()
            if line.strip()}


def setup_cfg() -> configparser.ConfigParser:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    return config


def core_requirements() -> set:
    return requirement_names(setup_cfg()["options"]["install_requires"])


def extras() -> dict:
    return {name: requirement_names(lines) for name, lines in setup_cfg()["options.extras_require"].items()}


def third_party_imports(path: Path) -> dict:
    """{distribution: imported at module level (True) or only inside functions / ``if TYPE_CHECKING:``}."""
    found: dict = {}

    def visit(node, lazy: bool) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            lazy = True
        elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            lazy = True
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module]
        for name in names:
            top = name.split(".")[0]
            if top not in sys.stdlib_module_names and top not in ("engine", "maskdistill_napari"):
                distribution = DISTRIBUTION_OF.get(top.lower(), normalised(top))
                found[distribution] = found.get(distribution, False) or not lazy
        for child in ast.iter_child_nodes(node):
            visit(child, lazy)

    visit(ast.parse(path.read_text(), str(path)), False)
    return found


def imports_of(package: str) -> dict:
    """{distribution: {file: imported at module level}} over a package's files."""
    found: dict = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        for distribution, eager in third_party_imports(path).items():
            found.setdefault(distribution, {})[path.relative_to(ROOT).as_posix()] = eager
    return found


def test_the_core_install_is_the_engine_without_napari_qt_or_magicgui():
    core = core_requirements()
    assert not core & GUI, f"move these to the napari extra: {sorted(core & GUI)}"
    assert {"torch", "timm", "torchvision", "filelock"} <= core


def test_the_napari_extras_bring_the_plugin_and_its_manifest_stays_declared():
    found = extras()
    plugin = {"napari", "magicgui", "qtpy"}
    assert plugin | {"pyqt5"} <= found["napari"]
    assert plugin | {"pyqt6"} <= found["pyqt6"]
    assert found["napari"] <= found["all"]
    entry_points = setup_cfg()["options.entry_points"]
    assert "maskdistill-napari = maskdistill_napari:napari.yaml" in entry_points["napari.manifest"]
    assert "maskdistill = engine.cli:main" in entry_points["console_scripts"]
    assert "napari.yaml" in setup_cfg()["options.package_data"]["maskdistill_napari"]


def test_every_module_the_engine_imports_is_declared_and_optional_ones_are_imported_lazily():
    core, optional = core_requirements(), set().union(*(names for extra, names in extras().items()
                                                        if extra not in ("test", "all", "napari", "pyqt6")))
    engine = imports_of("engine")
    assert not GUI & set(engine), {name: engine[name] for name in GUI & set(engine)}
    undeclared = {name: files for name, files in engine.items() if name not in core | optional}
    assert not undeclared, f"declare these in setup.cfg's install_requires: {undeclared}"
    eager_optional = {name: [f for f, eager in files.items() if eager] for name, files in engine.items()
                      if name not in core and any(files.values())}
    assert not eager_optional, f"an optional package must be imported inside the function using it: {eager_optional}"


def test_every_module_the_plugin_imports_is_declared_in_the_core_or_the_napari_extra():
    declared = core_requirements() | extras()["napari"]
    undeclared = {name: files for name, files in imports_of("maskdistill_napari").items() if name not in declared}
    assert not undeclared, f"declare these in setup.cfg (core or the napari extra): {undeclared}"


def test_no_module_level_import_of_a_posix_only_module():
    posix_only = {"fcntl", "termios", "resource", "pwd", "grp"}
    offending = []
    for package in ("engine", "maskdistill_napari"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.parse(path.read_text(), str(path)).body:
                names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                         [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
                offending += [f"{path.relative_to(ROOT)}:{node.lineno} {n}" for n in names
                              if n.split(".")[0] in posix_only]
    assert not offending, offending


def test_every_engine_module_imports_without_fcntl_as_on_windows():
    modules = sorted(".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
                     for path in (ROOT / "engine").rglob("*.py"))
    code = ("import importlib, sys, warnings\n"
            "sys.modules['fcntl'] = None  # import fcntl raises ImportError, as on Windows\n"
            "warnings.simplefilter('ignore')  # filelock warns that it falls back to its soft lock\n"
            f"for name in {modules!r}:\n"
            "    importlib.import_module(name)\n"
            f"print('imported', {len(modules)})\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == f"imported {len(modules)}", done.stdout
    assert len(modules) > 30
