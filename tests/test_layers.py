"""The package's layers (docs/architecture.md): no import circle between modules, imports run from a higher layer
to a lower one (or within a layer), and the few that run upward are the ones the architecture names."""

import ast
from collections import defaultdict
from pathlib import Path

import kdlab

PACKAGE = Path(kdlab.__file__).parent
LAYERS = [  # low → high; a module may import its own layer and every layer below
    {"core"},
    {"ops", "metrics", "data", "losses"},
    {"models"},
    {"training"},
    {"methods"},
    {"cache"},
    {"runs", "reporting"},
    {"pipeline"},
    {"tasks"},
    {"analysis", "studies", "bench"},
    {"api", "cli", "__init__", "__main__"},
]


def layer(module: str) -> int:
    top = module.split(".")[1] if module.count(".") else "__init__"
    return next(i for i, names in enumerate(LAYERS) if top in names)


def modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def imports(path: Path, module: str, known: set[str], top_level: bool) -> set[str]:
    """The kdlab modules ``path`` imports (only its module-level imports when ``top_level``)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.If):  # `if TYPE_CHECKING:` imports never run
            continue
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name.startswith("kdlab") and name not in (module, "kdlab"):
                found.add(name)
    return found


def graph(top_level: bool) -> dict[str, set[str]]:
    found = modules()
    return {m: imports(p, m, set(found), top_level) for m, p in found.items()}


def test_no_import_circle_between_modules():
    edges = graph(top_level=True)
    state: dict[str, int] = defaultdict(int)  # 0 new, 1 on the path, 2 done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            assert state[nxt] != 1, "import circle: " + " → ".join([*path[path.index(nxt) :], nxt])
            if state[nxt] == 0:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(edges):
        if state[node] == 0:
            visit(node)


def test_imports_run_down_the_layers():
    upward = sorted(
        (m, n) for m, targets in graph(top_level=False).items() for n in targets if layer(n) > layer(m)
    )
    assert upward == [], "imports from a lower layer up: " + ", ".join(f"{m} → {n}" for m, n in upward)


def test_every_module_says_its_one_job():
    missing = [m for m, p in modules().items() if not ast.get_docstring(ast.parse(p.read_text()))]
    assert missing == [], f"modules without a docstring: {missing}"
