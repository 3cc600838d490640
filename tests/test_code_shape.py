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
