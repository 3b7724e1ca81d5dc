"""Imports only go down: core <- datasets <- pipeline <- {tools, ros} <- sim <- eval <- cli, with no cycle.

Every module's imports are parsed (module level and inside functions, absolute and
relative) and each one is checked against the layer table below:

    layer 0  prism_ros.core        the filter (no ROS, no configuration of other layers)
    layer 1  prism_ros.datasets    readers of dataset formats
    layer 2  prism_ros.pipeline, prism_ros.config, prism_ros.stats
                                   the ROS-free pipeline, the parameter table, statistics
    layer 3  prism_ros.tools       offline tools       (never import prism_ros.ros)
    layer 3  prism_ros.ros         the ROS 2 side      (never import prism_ros.tools)
    layer 4  prism_ros.sim         the harness: the synthetic scene and simulated flights
    layer 5  prism_ros.eval        the harness: metrics, calibration, reports, bench, soak, checks
    layer 6  prism_ros.cli         the entry point: dispatches to the product and the harness

Layers 0-3 are the product and never import the harness (4-5).  A module may import its
own layer and the layers below it; tools and ros are siblings and may not import each
other.  No two modules import each other, directly or through others (no cycle, inside a
layer either).
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "prism_ros"

LAYERS = {
    "prism_ros": 0,  # the package's __init__ (version, environment defaults)
    "prism_ros.core": 0,
    "prism_ros.datasets": 1,
    "prism_ros.pipeline": 2,
    "prism_ros.config": 2,
    "prism_ros.stats": 2,
    "prism_ros.tools": 3,
    "prism_ros.ros": 3,
    "prism_ros.sim": 4,
    "prism_ros.eval": 5,
    "prism_ros.cli": 6,
}
PRODUCT = (
    "prism_ros.core",
    "prism_ros.datasets",
    "prism_ros.pipeline",
    "prism_ros.config",
    "prism_ros.stats",
    "prism_ros.tools",
    "prism_ros.ros",
)
HARNESS = ("prism_ros.sim", "prism_ros.eval")
SIBLINGS = {("prism_ros.tools", "prism_ros.ros"), ("prism_ros.ros", "prism_ros.tools")}


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _unit(module: str) -> str:
    """The layer unit of a module: the longest key of LAYERS that is a prefix of it."""
    best = None
    for k in LAYERS:
        if module == k or module.startswith(k + "."):
            if best is None or len(k) > len(best):
                best = k
    return best


def _imports(path: Path):
    """(line, imported module) of every import in ``path``, relative ones resolved."""
    mod = _module_name(path)
    package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield node.lineno, a.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            yield node.lineno, target
            for a in node.names:  # `from prism_ros import cli` imports the module prism_ros.cli
                if target in ("prism_ros",) or target in LAYERS:
                    sub = f"{target}.{a.name}"
                    if _unit(sub) != _unit(target):
                        yield node.lineno, sub


def _violations():
    out = []
    for path in sorted(PKG.rglob("*.py")):
        src = _module_name(path)
        su = _unit(src)
        assert su is not None, f"{src} is in no layer: add it to LAYERS"
        for line, target in _imports(path):
            if not target.startswith("prism_ros"):
                continue
            tu = _unit(target)
            if tu is None:
                out.append(f"{path.relative_to(ROOT)}:{line}: imports {target}, which is in no layer")
            elif LAYERS[tu] > LAYERS[su] or (su, tu) in SIBLINGS:
                out.append(
                    f"{path.relative_to(ROOT)}:{line}: {src} (layer {LAYERS[su]}) imports {target} (layer {LAYERS[tu]})"
                )
    return out


def test_imports_only_go_down():
    bad = _violations()
    assert not bad, "imports that run back up:\n" + "\n".join(bad)


def _modules():
    return {_module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def _import_names(path: Path):
    """Every module name an import reaches: ``from X import name`` yields ``X.name``, which is a submodule
    or a name defined in the module X (the caller tells them apart)."""
    mod = _module_name(path)
    package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for a in node.names:  # `from . import se3` imports the module prism_ros.core.se3
                yield f"{target}.{a.name}"


def _cycles():
    """The strongly connected components of the import graph with more than one module (Tarjan)."""
    mods = _modules()
    graph = {}
    for mod, path in mods.items():
        deps = set()
        for target in _import_names(path):
            if target in mods:
                deps.add(target)
            elif target.rsplit(".", 1)[0] in mods and target.rsplit(".", 1)[0] != mod:
                deps.add(target.rsplit(".", 1)[0])  # a name imported from a module
        graph[mod] = deps - {mod}
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle():
    cycles = _cycles()
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_product_never_imports_the_harness():
    offenders = [
        f"{p.relative_to(ROOT)}:{line}: {t}"
        for p in sorted(PKG.rglob("*.py"))
        if _unit(_module_name(p)) in PRODUCT
        for line, t in _imports(p)
        if _unit(t) in HARNESS
    ]
    assert not offenders, offenders


def test_the_checker_sees_a_cycle():
    a, b = PKG / "core" / "_cycle_probe_a.py", PKG / "core" / "_cycle_probe_b.py"
    a.write_text("def f():\n    from . import _cycle_probe_b\n", encoding="utf-8")
    b.write_text("from prism_ros.core._cycle_probe_a import f\n", encoding="utf-8")
    try:
        assert ["prism_ros.core._cycle_probe_a", "prism_ros.core._cycle_probe_b"] in _cycles()
    finally:
        a.unlink()
        b.unlink()


@pytest.mark.parametrize("forbidden", ["rclpy", "prism_ros.config"])
def test_core_imports_neither_rclpy_nor_the_node_settings(forbidden):
    offenders = [
        f"{p.relative_to(ROOT)}:{line}"
        for p in sorted((PKG / "core").rglob("*.py"))
        for line, t in _imports(p)
        if t == forbidden or t.startswith(forbidden + ".")
    ]
    assert not offenders, offenders


def test_the_checker_sees_an_upward_import(tmp_path, monkeypatch):
    """The parser resolves relative and function-level imports (so the test above can fail)."""
    src = "def f():\n    from ..tools import runner\n    from . import se3\n"
    p = PKG / "core" / "_layering_probe.py"
    p.write_text(src, encoding="utf-8")
    try:
        targets = [t for _, t in _imports(p)]
        assert "prism_ros.tools" in targets and "prism_ros.core" in targets
        assert any("core/_layering_probe.py:2" in v for v in _violations())
    finally:
        p.unlink()


def test_a_module_over_500_lines_says_why():
    """One module, one concern: a module over 500 lines states the reason at its top."""
    long = []
    for p in sorted(PKG.rglob("*.py")):
        text = p.read_text(encoding="utf-8")
        if len(text.splitlines()) > 500 and "Over 500 lines:" not in (ast.get_docstring(ast.parse(text)) or ""):
            long.append(f"{p.relative_to(ROOT)}: {len(text.splitlines())} lines")
    assert not long, "split these along their seams, or say why at the top ('Over 500 lines: ...'):\n" + "\n".join(long)
