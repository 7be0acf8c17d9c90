"""engine/'s folders are its layers: a module imports only from its own layer or the ones below it, and no
modules import each other round in a circle. Every import counts, at module level and inside functions (a
lazy import still ties the two modules together). The plugin's own boundary (it reaches the engine only
through engine.api) is tests/test_plugin_engine_boundary.py."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENGINE = ROOT / "engine"

# The layer order, lowest first: the one place it is declared. A module belongs to the entry with the longest
# prefix naming it (a folder is a package prefix; the top level names its modules one by one).
LAYERS = (
    ("helpers", ("engine", "engine.atomic", "engine.masks", "engine.device")),
    ("formats", ("engine.io",)),
    ("method", ("engine.method",)),
    ("state", ("engine.state",)),
    ("output", ("engine.output",)),
    ("orchestration", ("engine.orchestration",)),
    ("faces", ("engine.api", "engine.cli")),
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def engine_modules() -> dict:
    return {module_name(path): path for path in sorted(ENGINE.rglob("*.py"))}


def layer_of(module: str) -> int | None:
    """Index in LAYERS of the entry with the longest prefix naming ``module``; None when none does."""
    best, best_length = None, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_length:
                best, best_length = index, len(prefix)
    return best


def _imported_names(module: str, path: Path, node) -> list:
    """Dotted names an import statement may load: the module itself, and for ``from m import n`` also
    ``m.n`` (a submodule, when n is one). Relative imports resolved against ``module``'s package."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        package = package[:len(package) - (node.level - 1)]
        base = ".".join(package + ([base] if base else []))
    return [base] + [f"{base}.{alias.name}" for alias in node.names]


def engine_imports(modules: dict) -> dict:
    """{module: {(imported engine module, line)}} over every import statement, at any depth of the file."""
    found = {}
    for module, path in modules.items():
        edges = found.setdefault(module, set())
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for name in _imported_names(module, path, node):
                while name not in modules and "." in name:  # engine.x.y.Name -> engine.x.y
                    name = name.rsplit(".", 1)[0]
                # a package's __init__ runs on the way to its modules: only the module named is the dependency
                if name in modules and name != module and (name.split(".")[0] == "engine"):
                    if modules[name].name != "__init__.py" or name == "engine":
                        edges.add((name, node.lineno))
    return found


def circles(graph: dict) -> list:
    """Strongly connected groups of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, groups, counter = {}, {}, [], set(), [], [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


MODULES = engine_modules()
IMPORTS = engine_imports(MODULES)


def test_every_engine_module_has_a_layer():
    unplaced = sorted(module for module in MODULES if layer_of(module) is None)
    assert not unplaced, f"add these to a layer of LAYERS in tests/test_layers.py: {unplaced}"


def test_no_engine_module_imports_a_layer_above_its_own():
    upward = [f"{module} ({LAYERS[layer_of(module)][0]}) imports {target} ({LAYERS[layer_of(target)][0]}) "
              f"at line {line}"
              for module, edges in sorted(IMPORTS.items()) for target, line in sorted(edges)
              if layer_of(target) is not None and layer_of(module) is not None
              and layer_of(target) > layer_of(module)]
    assert not upward, "upward imports (move the code to the layer where it belongs):\n" + "\n".join(upward)


def test_no_engine_modules_import_each_other_in_a_circle():
    graph = {module: {target for target, _ in edges} for module, edges in IMPORTS.items()}
    found = circles(graph)
    assert not found, f"import circles: {found}"


def test_the_scan_sees_lazy_imports_and_both_checks_catch_what_they_should(tmp_path):
    """An import inside a function counts as much as one at the top; a made-up upward edge and a made-up
    circle are flagged."""
    lazy = tmp_path / "lazy.py"
    lazy.write_text("import numpy\n\n\ndef later():\n    from engine.state.review import rename_category\n")
    found = engine_imports({"engine.masks": lazy, "engine.state.review": MODULES["engine.state.review"]})
    assert found["engine.masks"] == {("engine.state.review", 5)}
    assert layer_of("engine.state.review") > layer_of("engine.masks")  # so that import is upward
    assert layer_of("engine.output.export") > layer_of("engine.state.label_state") > layer_of("engine.io.coco")
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("source, expected", [
    ("from engine.io import coco", "engine.io.coco"),
    ("from engine.io.coco import CocoWriter", "engine.io.coco"),
    ("import engine.method.distill", "engine.method.distill"),
    ("from engine import __version__", "engine"),
])
def test_imports_resolve_to_the_engine_module_they_load(source, expected):
    path = ENGINE / "orchestration" / "pipeline.py"
    node = ast.parse(source).body[0]
    names = _imported_names("engine.orchestration.pipeline", path, node)
    resolved = set()
    for name in names:
        while name not in MODULES and "." in name:
            name = name.rsplit(".", 1)[0]
        resolved.add(name)
    assert expected in resolved
