"""The shape of the code: imports run one way (import-linter's contracts in pyproject.toml), the project is an
installed package rather than a repository root on sys.path, and no module or function outgrows a reader."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

PACKAGES = ("tools", "segnet_bvlc", "prototxt", "layers")
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(tree: Path) -> subprocess.CompletedProcess:
    # PYTHONPATH first: the packages of `tree`, not the editable install's, are the ones analysed.
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=tree, capture_output=True, text=True,
                          timeout=120, env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"})


def test_imports_run_one_way():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "1 kept, 0 broken" in result.stdout, result.stdout[-2000:]


def test_a_backwards_import_breaks_the_contract(tmp_path):
    """The contract can fail: the same tree with one import from the base up to the study is refused, and the
    report names that import."""
    for name in PACKAGES:
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__", "static"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    paths = tmp_path / "segnet_bvlc" / "core" / "paths.py"
    paths.write_text(paths.read_text() + "\n\ndef study():\n    import segnet_bvlc.study  # noqa\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "segnet_bvlc.core is not allowed to import segnet_bvlc.study" in result.stdout, result.stdout[-2000:]
    assert "segnet_bvlc.core.paths -> segnet_bvlc.study" in result.stdout


def test_the_project_is_an_installed_package_not_a_path_entry():
    """From another folder the four packages import from this checkout, while the repository root itself is not on
    sys.path (so `tests`, `data` or a stray module of the root are not importable by accident)."""
    code = ("import sys, importlib.util, tools, segnet_bvlc, prototxt, layers; "
            "print('\\n'.join(m.__file__ for m in (tools, segnet_bvlc, prototxt, layers))); "
            "print('PATH', *sys.path, sep='\\n'); print('tests', importlib.util.find_spec('tests'))")
    out = subprocess.run([sys.executable, "-c", code], cwd="/", capture_output=True, text=True, timeout=60,
                         env={"PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    files, _, rest = out.stdout.partition("PATH\n")
    for name, file in zip(PACKAGES, files.split()):
        assert Path(file) == ROOT / name / "__init__.py"
    entries = [Path(p).resolve() for p in rest.splitlines()[:-1] if p]
    assert ROOT not in entries, entries
    assert rest.splitlines()[-1] == "tests None"


def python_files():
    for name in PACKAGES:
        yield from sorted((ROOT / name).rglob("*.py"))


def test_no_module_over_400_lines():
    long = {str(p.relative_to(ROOT)): n for p in python_files() if (n := len(p.read_text().splitlines())) > 400}
    assert not long, long


def test_no_function_over_60_lines_but_documented_algorithms():
    """A function longer than 60 lines is allowed only where a comment on its `def` line says which algorithm it
    transcribes (`# algorithm: ...`), so that a long function is a decision, not an accident."""
    long = []
    for path in python_files():
        source = path.read_text()
        lines = source.splitlines()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > 60 and "# algorithm:" not in lines[node.lineno - 1]:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({length} lines)")
    assert not long, "\n".join(long)
