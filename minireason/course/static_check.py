"""What a submission's source says before it runs: imports the grader refuses, and code an
assignment does not need (reading the package, signalling processes, walking the interpreter).

The grader parses the file (it never runs it in its own process) and puts these notes in the
feedback, so that a student learns why an import fails and an instructor sees what a file
tried. Notes do not change the score: what the sandbox allows is enforced there
(:mod:`minireason.course.runner`); the notes only report.

::

    notes = source_notes(tree, provided={"minireason.nn.layers": ("self_attention_forward",)},
                         allowed=("numpy",))
    # ['line 3: imports minireason.nn.attention, which submissions cannot import ...']
"""

from __future__ import annotations

import ast
import sys

UNNEEDED_MODULES = {
    "ctypes": "reaches into the interpreter",
    "gc": "walks the interpreter's objects",
    "importlib": "imports modules by name",
    "inspect": "walks the interpreter's objects",
    "multiprocessing": "starts processes",
    "resource": "changes the process limits",
    "signal": "handles or sends signals",
    "socket": "opens network connections",
    "subprocess": "starts processes",
}
UNNEEDED_ATTRIBUTES = {
    "__globals__": "reads a function's globals",
    "__subclasses__": "walks the class hierarchy",
    "_getframe": "walks the interpreter's frames",
    "modules": "reads sys.modules",
    "kill": "signals processes",
    "killpg": "signals processes",
    "fork": "starts processes",
    "setsid": "leaves its session",
    "system": "runs shell commands",
    "execv": "replaces the process",
    "execve": "replaces the process",
    "execvp": "replaces the process",
    "getppid": "looks for the grader's process",
}
UNNEEDED_BUILTINS = {
    "__import__": "imports modules by name",
    "exec": "runs code from a string",
    "eval": "runs code from a string",
    "compile": "compiles code from a string",
}


def source_notes(tree: ast.Module, provided: dict[str, tuple], allowed: tuple[str, ...]) -> list:
    """Notes on a parsed submission, one line each, in source order."""
    notes: list[tuple[int, str]] = []
    docstrings = _docstrings(tree)
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Import):
            for alias in node.names:
                notes += _import_note(line, alias.name, (), provided, allowed)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = tuple(a.name for a in node.names)
            notes += _import_note(line, node.module, names, provided, allowed)
        elif isinstance(node, ast.Attribute) and node.attr in UNNEEDED_ATTRIBUTES:
            why = UNNEEDED_ATTRIBUTES[node.attr]
            notes.append((line, f"uses .{node.attr}, which {why}; an assignment does not need it"))
        elif isinstance(node, ast.Name) and node.id in UNNEEDED_BUILTINS:
            why = UNNEEDED_BUILTINS[node.id]
            notes.append((line, f"uses {node.id}, which {why}; an assignment does not need it"))
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
            and ("minireason." in node.value or "minireason/" in node.value)
        ):
            notes.append((line, "names the minireason package in a string"))
    seen, out = set(), []
    for line, text in sorted(notes):
        if (line, text) not in seen:
            seen.add((line, text))
            out.append(f"line {line}: {text}")
    return out


def _import_note(line, module: str, names: tuple, provided, allowed) -> list:
    top = module.partition(".")[0]
    if top == "minireason":
        if module in provided:
            extra = [n for n in names if n not in provided[module]]
            if not extra:
                return []
            return [
                (
                    line,
                    f"imports {', '.join(extra)} from {module}: while grading, that module "
                    f"provides only {', '.join(provided[module])}",
                )
            ]
        return [
            (
                line,
                f"imports {module}: the package's reference code cannot be imported while "
                "grading (write the code yourself)",
            )
        ]
    if top in UNNEEDED_MODULES:
        return [(line, f"imports {module}, which {UNNEEDED_MODULES[top]}; not needed here")]
    if top not in allowed and top not in sys.stdlib_module_names:
        return [
            (
                line,
                f"imports {module}, which is not available while grading (only the standard "
                f"library and {', '.join(allowed)})",
            )
        ]
    return []


def _docstrings(tree: ast.Module) -> set[int]:
    """ids of the string constants that are docstrings (the module's, classes', functions')."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found
