"""The layer order of shared/DESIGN.md (table in docs/architecture.md), checked on every import.

Every module under src/inferpool is parsed with `ast`, and every import counts: module-level,
function-local and `if TYPE_CHECKING:` ones alike. A local or type-only import hides a
dependency from the interpreter, not from the design. Budget: under 2 s.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
ROOT = "inferpool"

# Step 1: leaf utilities with no inferpool imports. Every top-level module inferpool/X.py other
# than cli.py is a leaf, so a new one (inferpool/records.py, say) is covered without an edit;
# this list names today's, and a name that no longer exists fails the test.
LEAF_MODULES = ("errors", "durations", "tokenization", "kvwire", "labels")
LEAF_STEP = 1
PACKAGE_STEPS = {
    "api": 2,
    "state": 3,
    "scrape": 4,
    "sources": 4,
    "scheduling": 5,
    "admission": 5,
    "guard": 5,
    "request": 6,
    "observe": 7,
    "gateway": 8,
    "extproc": 8,
    "lora": 8,
    "sim": 8,
    "local": 9,
    "bench": 9,
}
TOP_LEVEL_STEPS = {"cli": 10}
# Who may import sim/ besides sim/ itself: bench/ (runs fleets), local/ (`inferpool up` runs
# manifests over simulated replicas) and cli.py (registers `inferpool sim`). Nothing at sim's
# step or below does: what the sim and the gateway share lives in a leaf module.
SIM_USERS = ("sim", "bench", "local", "cli")
HOW_TO_FIX = (
    "Layer order, lowest first (shared/DESIGN.md, docs/architecture.md): 1 leaf modules "
    "(inferpool/*.py but cli.py, no inferpool imports), 2 api, 3 state, 4 scrape/sources, "
    "5 scheduling/admission/guard, 6 request, 7 observe, 8 gateway/extproc/lora/sim, "
    "9 local/bench, 10 cli.py.\n"
    "A module imports only from its own step or below. To fix, move what both sides need down "
    "(to the lower layer, or to a leaf module), or pass a callback; a function-local or "
    "TYPE_CHECKING import is still an import."
)


@dataclass(frozen=True)
class Import:
    """One import statement's edge: `source` names `target` at `path:line`."""

    source: str
    target: str
    path: Path
    line: int
    context: str  # "", "function-local" or "under `if TYPE_CHECKING:`"

    def where(self, src: Path) -> str:
        place = f"{self.path.relative_to(src.parent)}:{self.line}"
        return f"{place} ({self.context})" if self.context else place


@dataclass(frozen=True)
class Layer:
    step: int
    name: str


@dataclass(frozen=True)
class Scan:
    modules: frozenset[str]
    packages: frozenset[str]  # the modules that are a package's __init__.py
    imports: tuple[Import, ...]
    dynamic: tuple[str, ...]  # import_module/__import__ of an inferpool (or a computed) name: a hidden edge


def module_name(src: Path, path: Path) -> str:
    parts = path.relative_to(src).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def scan(src: Path) -> Scan:
    files = {module_name(src, p): p for p in sorted((src / ROOT).rglob("*.py"))}
    modules = frozenset(files)
    packages = frozenset(name for name, path in files.items() if path.name == "__init__.py")
    imports: list[Import] = []
    dynamic: list[str] = []
    for name, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node, context in _walk(tree, ""):
            for target in _targets(node, package, modules):
                imports.append(Import(name, target, path, node.lineno, context))
            if _is_dynamic_import(node):
                dynamic.append(f"{path.relative_to(src.parent)}:{node.lineno}")
    return Scan(modules, packages, tuple(imports), tuple(dynamic))


def _walk(node: ast.AST, context: str) -> Iterator[tuple[ast.AST, str]]:
    for child in ast.iter_child_nodes(node):
        inner = context
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            inner = context or "function-local"
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            yield child, context
            for grandchild in child.body:
                yield grandchild, "under `if TYPE_CHECKING:`"
                yield from _walk(grandchild, "under `if TYPE_CHECKING:`")
            for grandchild in child.orelse:
                yield grandchild, context
                yield from _walk(grandchild, context)
            continue
        yield child, inner
        yield from _walk(child, inner)


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _targets(node: ast.AST, package: str, modules: frozenset[str]) -> list[str]:
    """The inferpool modules one import statement names (the submodule where it names one)."""
    if isinstance(node, ast.Import):
        return list(dict.fromkeys(_existing(a.name, modules) for a in node.names if _is_ours(a.name)))
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:
        anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
        base = ".".join([*anchor, base] if base else anchor)
    if not _is_ours(base):
        return []
    named = (f"{base}.{alias.name}" for alias in node.names)
    return list(dict.fromkeys(name if name in modules else _existing(base, modules) for name in named))


def _is_ours(name: str) -> bool:
    return name == ROOT or name.startswith(ROOT + ".")


def _existing(name: str, modules: frozenset[str]) -> str:
    """The longest prefix of `name` that is a module (an import of a missing name still counts)."""
    while name not in modules and "." in name:
        name = name.rpartition(".")[0]
    return name


def _is_dynamic_import(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call) or not node.args:
        return False
    func = node.func
    called = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
    first = node.args[0]
    someone_elses = (
        isinstance(first, ast.Constant) and isinstance(first.value, str) and not _is_ours(first.value)
    )
    return called in ("import_module", "__import__") and not someone_elses


def layer_of(module: str) -> Layer | None:
    """The step a module sits at; None for the `inferpool` package itself (it is nothing).

    `inferpool.X...` is in package X's step when X is in PACKAGE_STEPS; otherwise inferpool/X.py
    is a top-level module: cli.py's step, or a leaf. (`unplaced_packages` catches a package X
    that is in neither, before it could pass for a leaf.)
    """
    parts = module.split(".")
    if len(parts) == 1:
        return None
    top = parts[1]
    if top in PACKAGE_STEPS:
        return Layer(PACKAGE_STEPS[top], top)
    if top in TOP_LEVEL_STEPS:
        return Layer(TOP_LEVEL_STEPS[top], f"{top}.py")
    return Layer(LEAF_STEP, "leaf")


def unplaced_packages(found: Scan) -> list[str]:
    """Subpackages of inferpool with no step in PACKAGE_STEPS."""
    tops = {".".join(name.split(".")[:2]) for name in found.packages if name != ROOT}
    return sorted(top for top in tops if top.split(".")[1] not in PACKAGE_STEPS)


def layer_violations(found: Scan, src: Path) -> list[str]:
    out = []
    for imp in found.imports:
        rule = _broken_rule(imp)
        if rule is not None:
            out.append(f"{imp.where(src)}: {imp.source} imports {imp.target}: {rule}")
    return out


def _broken_rule(imp: Import) -> str | None:
    source, target = layer_of(imp.source), layer_of(imp.target)
    if source is None:
        return "inferpool/__init__.py is nothing: it imports nothing from inferpool"
    if source.step == LEAF_STEP:
        return f"{imp.source} is a leaf module (step 1): it imports nothing from inferpool"
    if target is None:
        return None
    if target.step > source.step:
        return (
            f"{source.name} (step {source.step}) may not import {target.name} (step {target.step}), "
            "a higher layer"
        )
    if target.name == "sim" and imp.source.split(".")[1] not in SIM_USERS:
        return (
            "nothing but sim/, bench/, local/ and cli.py imports sim/: move what both need to a "
            "leaf module (as inferpool/tokenization.py and inferpool/kvwire.py)"
        )
    return None


Edges = dict[str, dict[str, list[Import]]]  # source -> target -> every import statement between them


def cycles(found: Scan) -> list[list[list[Import]]]:
    """One cycle per strongly connected group of modules: the chain of edges that closes it."""
    edges: Edges = {}
    for imp in found.imports:
        edges.setdefault(imp.source, {}).setdefault(imp.target, []).append(imp)
    out = []
    for group in _strongly_connected(edges):
        start = min(group)
        if len(group) > 1 or start in edges.get(start, {}):
            out.append(_cycle_through(start, group, edges))
    return out


def _strongly_connected(edges: Edges) -> list[set[str]]:
    """Tarjan's algorithm, iterative (no recursion limit on a deep import chain)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, {}))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, {})))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                group = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.add(member)
                    if member == node:
                        break
                groups.append(group)
    return groups


def _cycle_through(start: str, group: set[str], edges: Edges) -> list[list[Import]]:
    """The shortest chain of edges from `start` back to itself inside `group` (breadth first)."""
    came_from: dict[str, list[Import]] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target, imp in sorted(edges.get(node, {}).items()):
                if target not in group:
                    continue
                if target == start:
                    chain = [imp]
                    while chain[0][0].source != start:
                        chain.insert(0, came_from[chain[0][0].source])
                    return chain
                if target not in came_from:
                    came_from[target] = imp
                    following.append(target)
        frontier = following
    raise AssertionError(f"{start} is in a cycle but no path leads back to it")


def describe_cycle(chain: list[list[Import]], src: Path) -> str:
    steps = "\n".join(
        f"    {edge[0].source} -> {edge[0].target}  [{'; '.join(imp.where(src) for imp in edge)}]"
        for edge in chain
    )
    return f"  cycle of {len(chain)} module(s):\n{steps}"


# -- the project itself ------------------------------------------------------------------


@pytest.fixture(scope="module")
def project() -> Scan:
    return scan(SRC)


def test_every_package_has_a_layer(project: Scan) -> None:
    missing = unplaced_packages(project)
    assert not missing, (
        f"{', '.join(missing)} has no step in the layer order: add it to PACKAGE_STEPS here, "
        "to the layer order in shared/DESIGN.md and to the table in docs/architecture.md"
    )


def test_named_leaf_modules_exist(project: Scan) -> None:
    stale = [name for name in LEAF_MODULES if f"{ROOT}.{name}" not in project.modules]
    assert not stale, f"LEAF_MODULES names modules that are gone: {stale}; update the list"


def test_imports_follow_the_layer_order(project: Scan) -> None:
    violations = layer_violations(project, SRC)
    if violations:
        pytest.fail(
            f"{len(violations)} import(s) against the layer order:\n  "
            + "\n  ".join(violations)
            + "\n"
            + HOW_TO_FIX,
            pytrace=False,
        )


def test_no_import_cycles(project: Scan) -> None:
    found = cycles(project)
    if found:
        pytest.fail(
            f"{len(found)} import cycle(s) between modules (function-local and TYPE_CHECKING imports "
            "count):\n"
            + "\n".join(describe_cycle(chain, SRC) for chain in found)
            + "\nBreak each one by design: move the shared type to the lower module, or pass a "
            "callback; do not hide it in a function or under TYPE_CHECKING.",
            pytrace=False,
        )


def test_no_dynamic_imports_of_inferpool_modules(project: Scan) -> None:
    assert not project.dynamic, (
        f"import_module/__import__ of an inferpool (or computed) name at {', '.join(project.dynamic)}: "
        "it hides a dependency from this test; import it statically"
    )


# -- the checker, on made-up trees (it must catch what it is for) ------------------------


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    """A made-up src/ with `files` (path -> text) and an empty inferpool/__init__.py."""
    src = tmp_path / "src"
    for name, text in {"inferpool/__init__.py": "", **files}.items():
        path = src / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return src


def test_checker_sees_function_local_and_type_checking_imports_upward(tmp_path: Path) -> None:
    src = _tree(
        tmp_path,
        {
            "inferpool/state/__init__.py": "",
            "inferpool/api/__init__.py": "def f():\n    from inferpool.state import x\n",
            "inferpool/admission/__init__.py": (
                "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import inferpool.request.director\n"
            ),
            "inferpool/request/__init__.py": "",
            "inferpool/request/director.py": "from inferpool.state import y\n",
        },
    )
    violations = layer_violations(scan(src), src)
    assert len(violations) == 2, violations
    assert violations[0].startswith("src/inferpool/admission/__init__.py:3 (under `if TYPE_CHECKING:`): ")
    assert "admission (step 5) may not import request (step 6)" in violations[0]
    assert violations[1].startswith("src/inferpool/api/__init__.py:2 (function-local): ")
    assert "api (step 2) may not import state (step 3)" in violations[1]


def test_checker_keeps_leaves_and_the_simulator_apart(tmp_path: Path) -> None:
    src = _tree(
        tmp_path,
        {
            "inferpool/errors.py": "",
            "inferpool/records.py": "from inferpool.errors import E\n",
            "inferpool/sim/__init__.py": "",
            "inferpool/sim/tokenizer.py": "from inferpool.errors import E\n",
            "inferpool/gateway/__init__.py": "from inferpool.sim import tokenizer\n",
            "inferpool/bench/__init__.py": "from inferpool.sim.tokenizer import T\n",
            "inferpool/cli.py": "import inferpool.bench\nfrom inferpool.sim import tokenizer\n",
        },
    )
    violations = layer_violations(scan(src), src)
    assert len(violations) == 2, violations
    assert "inferpool.gateway imports inferpool.sim.tokenizer: nothing but sim/" in violations[0]
    assert "inferpool.records is a leaf module (step 1)" in violations[1]


def test_checker_finds_a_cycle_hidden_in_a_function_and_names_its_lines(tmp_path: Path) -> None:
    src = _tree(
        tmp_path,
        {
            "inferpool/observe/__init__.py": "",
            "inferpool/observe/admin.py": "from inferpool.observe.dashboard import D\n",
            "inferpool/observe/dashboard.py": (
                "import typing\nif typing.TYPE_CHECKING:\n    from inferpool.observe.admin import A\n"
                "def f():\n    from inferpool.observe import admin\n"
            ),
            "inferpool/observe/metrics.py": "from inferpool.observe.admin import A\n",
        },
    )
    found = cycles(scan(src))
    assert [
        [[(i.source, i.target, i.line, i.context) for i in edge] for edge in chain] for chain in found
    ] == [
        [
            [("inferpool.observe.admin", "inferpool.observe.dashboard", 1, "")],
            [
                ("inferpool.observe.dashboard", "inferpool.observe.admin", 3, "under `if TYPE_CHECKING:`"),
                ("inferpool.observe.dashboard", "inferpool.observe.admin", 5, "function-local"),
            ],
        ]
    ]
    assert (
        "src/inferpool/observe/dashboard.py:3 (under `if TYPE_CHECKING:`); "
        "src/inferpool/observe/dashboard.py:5 (function-local)"
    ) in describe_cycle(found[0], src)


def test_checker_flags_an_unplaced_package_and_a_dynamic_import(tmp_path: Path) -> None:
    src = _tree(
        tmp_path,
        {
            "inferpool/newthing/__init__.py": (
                "import importlib\nimportlib.import_module('inferpool.sim')\nimportlib.import_module('yaml')\n"
                "def load(name):\n    return importlib.import_module(name)\n"
            ),
        },
    )
    found = scan(src)
    assert unplaced_packages(found) == ["inferpool.newthing"]
    assert found.dynamic == ("src/inferpool/newthing/__init__.py:2", "src/inferpool/newthing/__init__.py:5")
