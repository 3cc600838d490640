"""The repository keeps the shape its README promises: small files and functions, task facts in the registries."""
import ast
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent
SOURCES = [p for folder in ("ltdeploy", "training", "export", "benchmarks", "scripts")
           for p in sorted((ROOT / folder).rglob("*.py"))]
MAX_FILE_LINES = 250
MAX_FUNCTION_LINES = 60
# a task named in a comparison: `task == "detection"`, `desc.task != 'segmentation'`, `"detection" in ...`
TASK_TEST = re.compile(r"""(task\s*[!=]=\s*["'](classification|segmentation|detection)["'])|"""
                       r"""(["'](classification|segmentation|detection)["']\s*(==|!=|in)\s)""")
REGISTRIES = {ROOT / "ltdeploy" / "tasks.py", ROOT / "training" / "tasks.py"}


def test_no_file_or_function_is_too_long():
    assert len(SOURCES) > 50
    long = []
    for path in SOURCES:
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > MAX_FILE_LINES:
            long.append(f"{path.relative_to(ROOT)}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                size = node.end_lineno - node.lineno + 1
                if size > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {size} lines")
    assert long == []


def test_task_names_are_tested_only_in_the_registries():
    assert TASK_TEST.search('if desc.task == "detection":') and TASK_TEST.search("'segmentation' in tasks ")
    found = [f"{p.relative_to(ROOT)}:{i}" for p in SOURCES if p not in REGISTRIES
             for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if TASK_TEST.search(line)]
    assert found == []


def _runtime_imports(path: pathlib.Path, modules: set[str]) -> set[str]:
    """The repository modules a file imports when it runs (imports under `if TYPE_CHECKING:` are not run)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {id(n) for block in ast.walk(tree)
                   if isinstance(block, ast.If) and getattr(block.test, "id", "") == "TYPE_CHECKING"
                   for n in ast.walk(block)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module:
            found |= {m for m in [node.module, *(f"{node.module}.{a.name}" for a in node.names)] if m in modules}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in modules}
    return found


def test_no_import_circles():
    names = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p for p in SOURCES}
    graph = {name: _runtime_imports(path, set(names)) - {name} for name, path in names.items()}

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), list(graph[start])
        while todo:
            node = todo.pop()
            if node == goal:
                return True
            if node not in seen:
                seen.add(node)
                todo.extend(graph[node])
        return False
    assert graph["training.core.stage2"] and graph["training.checkpoints"]  # the scan sees imports
    circles = sorted(name for name in graph if reaches(name, name))
    assert circles == []
