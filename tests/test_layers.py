"""The import graph of the suite's packages has no circle, counting imports inside functions.

Imports flow one way: core types → shells and attacks → runner → reports and CLI. A lazy import
inside a function hides a circle from Python but not from a reader, so it counts here.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("robustness_eval", "shells", "attacks")
UPPER = {"robustness_eval.runner", "robustness_eval.api", "robustness_eval.cli", "robustness_eval.report",
         "robustness_eval.comparison"}


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def import_graph() -> dict[str, set[str]]:
    """Module → the suite's modules it imports anywhere in its file (`from pkg import module` names the module)."""
    modules = _modules()
    graph = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                submodules = [f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in modules]
                targets = submodules if len(submodules) == len(node.names) else [node.module, *submodules]
            else:
                continue
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_import_graph_has_no_circle_counting_imports_inside_functions():
    graph = import_graph()
    assert "robustness_eval.runner" in graph["robustness_eval.api"]  # the scan sees imports at all
    assert cycles(graph) == []


def test_the_checker_finds_a_circle_made_by_a_lazy_import():
    graph = import_graph()
    graph["robustness_eval.types"] = graph["robustness_eval.types"] | {"robustness_eval.api"}
    assert any("robustness_eval.types" in c and "robustness_eval.api" in c for c in cycles(graph))


def test_shells_and_attacks_never_import_the_runner_the_pipeline_or_the_reports():
    graph = import_graph()
    for module, imported in graph.items():
        if module.split(".")[0] in ("shells", "attacks"):
            assert not imported & UPPER, f"{module} imports {sorted(imported & UPPER)}"


SIZE_RULE_PACKAGES = ("robustness_eval", "attacks", "shells", "benchmarks")


def _package_files() -> list[Path]:
    return [path for package in SIZE_RULE_PACKAGES for path in (ROOT / package).rglob("*.py")]


def _over_the_rule(files: list[Path]) -> dict[str, str]:
    """Every function or method in `files` over 60 lines or 8 parameters (self and cls not counted)."""
    found = {}
    for path in files:
        tree = ast.parse(path.read_text())
        owners = {child: node.name for node in ast.walk(tree) if isinstance(node, ast.ClassDef) for child in node.body}
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            arguments = node.args
            count = (len(arguments.posonlyargs) + len(arguments.args) + len(arguments.kwonlyargs)
                     + bool(arguments.vararg) + bool(arguments.kwarg))
            count -= bool(arguments.args) and arguments.args[0].arg in ("self", "cls")
            lines = node.end_lineno - node.lineno + 1
            if lines > 60 or count > 8:
                name = f"{owners[node]}.{node.name}" if node in owners else node.name
                found[f"{'/'.join(path.parts[-2:])} {name}"] = f"{lines} lines, {count} parameters"
    return found


def test_no_function_in_any_package_is_over_60_lines_or_8_parameters():
    """Long functions and long argument lists are where run state used to travel; the run context carries it, and a
    shell's many settings are a dataclass (`Shell.settings_type`). One rule, no exceptions, for the engine, the
    attacks, the shells and the benchmarks."""
    files = _package_files()
    assert any(path.parts[-2] == "benchmarks" for path in files) and any(path.parts[-2] == "shells" for path in files)
    assert _over_the_rule(files) == {}


def test_the_size_rule_finds_a_long_function_and_a_long_argument_list(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(60))
    (tmp_path / "bad.py").write_text(f"def long():\n{body}\n\n\nclass Shell:\n"
                                     "    def __init__(self, a, b, c, d, e, f, g, h, i):\n        pass\n")
    bad = f"{tmp_path.name}/bad.py"
    assert _over_the_rule([tmp_path / "bad.py"]) == {f"{bad} long": "61 lines, 0 parameters",
                                                     f"{bad} Shell.__init__": "2 lines, 9 parameters"}
