"""The layers between top-level packages, read from the source: every module's imports
(function-level ones too) give the edges of a graph of packages. No two packages may
import each other, even through others, and the runtime never imports the lab."""
from __future__ import annotations

import ast
import importlib
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNTIME = ("streams", "vision", "cases", "workers", "api", "core")
LAB = ("training", "bench")


def packages(root: Path = ROOT) -> list[str]:
    return sorted(p.name for p in root.iterdir() if (p / "__init__.py").is_file() and p.name != "tests")


def imported(tree: ast.AST) -> list[tuple[str, int]]:
    """(module, line) of each absolute import in a module, wherever it stands."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.module, node.lineno))
    return out


def package_graph(root: Path = ROOT) -> dict[tuple[str, str], list[str]]:
    """(importer, imported) package pairs, each with the places that make the edge."""
    pkgs = set(packages(root))
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for pkg in pkgs:
        for path in sorted((root / pkg).rglob("*.py")):
            for module, line in imported(ast.parse(path.read_text(encoding="utf-8"), str(path))):
                top = module.split(".")[0]
                if top in pkgs and top != pkg:
                    edges[(pkg, top)].append(f"{path.relative_to(root)}:{line} imports {module}")
    return edges


def cycles(edges) -> list[list[str]]:
    """Strongly connected groups of more than one package (Tarjan)."""
    succ: dict[str, set[str]] = defaultdict(set)
    for a, b in edges:
        succ[a].add(b)
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in succ[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in list(succ):
        if v not in index:
            visit(v)
    return found


def test_the_graph_is_read_from_the_source():
    pkgs = packages()
    assert {"patrol", "vision", "streams", "cases", "api", "workers"} <= set(pkgs)
    edges = package_graph()
    assert ("patrol", "vision") in edges  # the CLI uses the detector
    assert cycles({("a", "b"): [], ("b", "c"): [], ("c", "a"): [], ("c", "d"): []}) == [["a", "b", "c"]]
    assert cycles({("a", "b"): [], ("b", "c"): []}) == []


def test_no_import_cycle_between_top_level_packages():
    edges = package_graph()
    found = cycles(edges)
    why = []
    for group in found:
        for (a, b), places in sorted(edges.items()):
            if a in group and b in group:
                why += [f"{a} -> {b}: {p}" for p in places[:3]]
    assert not found, f"packages that import each other: {found}\n" + "\n".join(why)


def test_the_runtime_never_imports_the_lab():
    edges = package_graph()
    bad = [p for (a, b), places in sorted(edges.items()) if a in RUNTIME and b in LAB for p in places]
    assert not bad, "the runtime imports the lab:\n" + "\n".join(bad)


def test_the_runtime_never_imports_the_cli():
    edges = package_graph()
    bad = [p for (a, b), places in sorted(edges.items()) if a in RUNTIME + LAB and b == "patrol" for p in places]
    assert not bad, "only the CLI is on top, nothing imports it:\n" + "\n".join(bad)


def test_route_modules_only_route():
    """The API's request and response models live in api/models/, not in the routes."""
    from pydantic import BaseModel

    defined = []
    for path in sorted((ROOT / "api" / "routers").glob("*.py")):
        module = importlib.import_module(f"api.routers.{path.stem}")
        defined += [f"{module.__name__}.{name}" for name, obj in vars(module).items()
                    if isinstance(obj, type) and issubclass(obj, BaseModel) and obj.__module__ == module.__name__]
    assert not defined, "models defined in route modules (move them to api/models/):\n" + "\n".join(defined)


def test_api_models_never_import_the_routes():
    bad = [f"{path.relative_to(ROOT)}:{line} imports {module}"
           for path in sorted((ROOT / "api" / "models").rglob("*.py"))
           for module, line in imported(ast.parse(path.read_text(encoding="utf-8"), str(path)))
           if module.startswith(("api.routers", "api.app"))]
    assert not bad, "models sit below the routes:\n" + "\n".join(bad)


def unguarded_ultralytics_imports(root: Path = ROOT) -> list[str]:
    """Imports of ultralytics in a function that has not called ``import_ultralytics()`` on an
    earlier line: the first such import in a process would bind ultralytics' log to stdout,
    which our `--json` commands own (vision/detector.py says why)."""
    found = []
    for pkg in packages(root):
        for path in sorted((root / pkg).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
            for fn in (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                       and n.name != "import_ultralytics"):  # the guard itself
                guards = [n.lineno for n in ast.walk(fn) if isinstance(n, ast.Call)
                          and getattr(n.func, "id", getattr(n.func, "attr", None)) == "import_ultralytics"]
                for module, line in imported(fn):
                    if module.split(".")[0] == "ultralytics" and not any(g < line for g in guards):
                        found.append(f"{path.relative_to(root)}:{line} imports {module}")
            top_level = [(m, line) for node in tree.body for m, line in imported(node)
                         if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
            found += [f"{path.relative_to(root)}:{line} imports {m} at module level" for m, line in top_level
                      if m.split(".")[0] == "ultralytics"]
    return sorted(set(found))


def test_every_import_of_ultralytics_goes_through_import_ultralytics():
    assert unguarded_ultralytics_imports() == []


def test_the_ultralytics_check_finds_an_unguarded_import(tmp_path):
    pkg = tmp_path / "lab"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "m.py").write_text("def late():\n    from ultralytics import YOLO\n    import_ultralytics()\n\n"
                              "def guarded():\n    import_ultralytics()\n    from ultralytics import YOLO\n")
    assert unguarded_ultralytics_imports(tmp_path) == ["lab/m.py:2 imports ultralytics"]
