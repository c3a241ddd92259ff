"""The import direction of the layers: hdl <- (sim, firmware) <- host <- cli, and no import circle.

Every import of every module of the package counts, those inside functions too: a late import
is still a dependency.
"""

import ast
import importlib
import importlib.util
import pkgutil

import spinemu

#: A module may import its own layer and the layers listed for it. ``root`` is the package root
#: (only ``__version__``), which anyone may import; ``main`` is ``python -m spinemu``.
ALLOWED = {
    "root": {"root"},
    "hdl": {"root", "hdl"},
    "sim": {"root", "hdl", "sim"},
    "firmware": {"root", "hdl", "firmware"},
    "host": {"root", "hdl", "sim", "firmware", "host"},
    "cli": {"root", "hdl", "sim", "firmware", "host", "cli"},
    "main": {"root", "cli"},
}
LAYERS = ("hdl", "sim", "firmware", "host")


def _modules():
    """``{module name: source path}`` of every module of the package. Each layer is walked from
    its own folder: setuptools maps them onto subpackages (``package-dir``)."""
    found = {"spinemu": spinemu.__file__,
             "spinemu.__main__": importlib.util.find_spec("spinemu.__main__").origin}
    for layer in LAYERS:
        package = importlib.import_module(f"spinemu.{layer}")
        found[package.__name__] = package.__file__
        for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            found[info.name] = importlib.util.find_spec(info.name).origin
    return found


def _layer(name):
    parts = name.split(".")
    if parts[:3] == ["spinemu", "host", "cli"]:
        return "cli"
    if name == "spinemu.__main__":
        return "main"
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else "root"


def _imports(name, path):
    """The ``spinemu`` modules that module ``name`` (at ``path``) imports."""
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            names.add(module)
            # `from package import module` imports the module
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return {n for n in names if n == "spinemu" or n.startswith("spinemu.")}


def _graph():
    modules = _modules()
    return modules, {name: {n for n in _imports(name, path) if n in modules and n != name}
                     for name, path in modules.items()}


def test_imports_run_one_way():
    modules, graph = _graph()
    assert len(modules) > 60      # the walk found the package
    wrong = [f"{name} ({_layer(name)}) imports {target} ({_layer(target)})"
             for name, targets in graph.items() for target in sorted(targets)
             if _layer(target) not in ALLOWED[_layer(name)]]
    assert not wrong, "\n".join(wrong)


def test_no_import_circle():
    _, graph = _graph()
    # a package's __init__ importing its own submodules is how a package exposes them, not a
    # circle of two ideas: drop those edges
    edges = {name: {t for t in targets if not t.startswith(name + ".")}
             for name, targets in graph.items()}
    state, stack, circles = {}, [], []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for target in sorted(edges[node]):
            if state.get(target) == "open":
                circles.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert not circles, "\n".join(" -> ".join(c) for c in circles)


def test_the_walk_sees_a_wrong_import(tmp_path):
    """The checker itself: an hdl module importing the host is caught."""
    source = tmp_path / "bad.py"
    source.write_text("from spinemu.host import client\nfrom ..sim import golden\n")
    found = _imports("spinemu.hdl.bad", str(source))
    assert {"spinemu.host.client", "spinemu.sim.golden"} <= found
    assert {_layer(n) for n in found} - ALLOWED["hdl"] == {"host", "sim"}
