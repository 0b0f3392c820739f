"""The shape the project keeps its code in: no function longer than 60 lines, numba kernels excepted (a kernel is
one loop nest that numba compiles whole; splitting it would cost a call per pixel)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("denoise_core", "study", "results", "bench", "tests")
MAX_FUNCTION_LINES = 60
NUMBA_DECORATORS = {"njit", "jit"}


def is_numba_kernel(function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """Decorated with ``njit``/``jit``, bare or called, plain or as ``numba.njit``."""
    for decorator in function.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", None)
        if name in NUMBA_DECORATORS:
            return True
    return False


def long_functions(source: str) -> list[tuple[str, int, int]]:
    """(name, first line, lines) of every function or method longer than the limit, counted from ``def`` to its last
    line; a numba kernel and what it holds are not counted."""
    found = []

    def visit(node: ast.AST, kernel: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = kernel
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                inside = kernel or is_numba_kernel(child)
                lines = child.end_lineno - child.lineno + 1
                if not inside and lines > MAX_FUNCTION_LINES:
                    found.append((child.name, child.lineno, lines))
            visit(child, inside)

    visit(ast.parse(source), False)
    return found


def python_files() -> list[Path]:
    return sorted(path for package in PACKAGES for path in (REPO / package).rglob("*.py"))


def test_the_line_count_sees_long_functions_and_methods_and_skips_numba_kernels():
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES))
    source = (f"def long():\n{body}\n"
              f"class C:\n    def method(self):\n    {body.replace(chr(10) + '    ', chr(10) + '        ')}\n"
              f"@numba.njit(cache=True)\ndef kernel():\n{body}\n"
              f"@njit\ndef bare_kernel():\n{body}\n"
              f"def short():\n{''.join(body.splitlines(keepends=True)[:MAX_FUNCTION_LINES - 1])}")
    assert [(name, lines) for name, _, lines in long_functions(source)] == [("long", MAX_FUNCTION_LINES + 1), ("method", MAX_FUNCTION_LINES + 1)]


@pytest.mark.parametrize("path", python_files(), ids=lambda path: str(path.relative_to(REPO)))
def test_no_function_is_longer_than_60_lines(path):
    long = long_functions(path.read_text())
    assert not long, "; ".join(f"{path.relative_to(REPO)}:{line} {name} has {lines} lines (at most {MAX_FUNCTION_LINES})" for name, line, lines in long)
