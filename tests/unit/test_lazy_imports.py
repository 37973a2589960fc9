"""Lazy loading stays in one place (lazy_imports): no function-local imports elsewhere, and it works.

The code is read with ast, not run: an import inside a function (outside `if TYPE_CHECKING:`) fails
the test unless `ALLOWED` names it with its reason.
"""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

import lazy_imports

if TYPE_CHECKING:
    from collections.abc import Iterator

ROOT = Path(__file__).resolve().parents[2]

#: The production packages (pyproject's wheel list, without the generated code).
PACKAGES = (
    "band_reader",
    "bank_card_reader",
    "checkin",
    "device_kit",
    "id_card_reader",
    "lazy_imports",
    "pcsc",
    "personal_data",
    "platform_server",
    "receipt_printer",
    "robot_arm",
    "sim_world",
    "uwb",
)

#: Function-local imports that stay, (file, imported module) -> why.
ALLOWED: dict[tuple[str, str], str] = {
    ("platform_server/db/engine.py", "alembic.config"): "importing alembic costs ~0.15 s; only migrations need it",
    ("platform_server/db/engine.py", "alembic"): "as above",
    ("platform_server/db/engine.py", "alembic.script"): "as above",
    ("platform_server/bootstrap.py", "platform_server"): "uwb_delivery is optional: a deployment may leave it out",
    ("platform_server/face/reference_photos.py", "pillow_heif"): "registers HEIF with Pillow when a HEIC comes",
    ("checkin/app.py", "checkin.face.face_analysis"): "loads dlib's models (~1 s), only with a camera",
    ("checkin/speech.py", "pyttsx3"): "optional at run time (no speech without it)",
    ("checkin/port_adapters.py", "PIL"): "Pillow only for the UI's preview (imported on the Tk thread)",
    ("receipt_printer/slip_layout.py", "PIL"): "Pillow only when a slip is printed (checkin.texts imports this)",
    ("sim_world/faces.py", "skimage"): "scikit-image only for its public-domain stand-in face",
}


def _under_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def local_imports(source: str) -> list[tuple[int, str]]:
    """(line, module) of every import inside a function body, outside `if TYPE_CHECKING:` blocks."""
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST, *, in_function: bool) -> None:
        if isinstance(node, ast.If) and _under_type_checking(node):
            for statement in node.orelse:
                visit(statement, in_function=in_function)
            return
        if in_function and isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif in_function and isinstance(node, ast.ImportFrom):
            found.append((node.lineno, "." * node.level + (node.module or "")))
        inside = in_function or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        for child in ast.iter_child_nodes(node):
            visit(child, in_function=inside)

    visit(ast.parse(source), in_function=False)
    return found


def _sources() -> list[Path]:
    return sorted(
        p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py") if "migrations/versions" not in p.as_posix()
    )


def test_no_function_local_imports_outside_the_allowed_list() -> None:
    seen: set[tuple[str, str]] = set()
    bad: list[str] = []
    for path in _sources():
        rel = path.relative_to(ROOT).as_posix()
        for line, module in local_imports(path.read_text(encoding="utf-8")):
            if (rel, module) in ALLOWED:
                seen.add((rel, module))
            else:
                bad.append(f"{rel}:{line} imports {module} inside a function")
    assert not bad, "import at the top (lazily: lazy_imports.LAZY_MODULES), not inside functions:\n" + "\n".join(bad)
    assert seen == set(ALLOWED), f"allowed but gone (drop them from ALLOWED): {sorted(set(ALLOWED) - seen)}"


def test_the_checker_sees_local_imports_and_skips_type_checking_blocks() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "import os\n"
        "def f():\n"
        "    if TYPE_CHECKING:\n"
        "        from a import b\n"
        "    import json\n"
        "    def g():\n"
        "        from .c import d\n"
        "class K:\n"
        "    def m(self):\n"
        "        from e import f\n"
    )
    assert local_imports(source) == [(6, "json"), (8, ".c"), (11, "e")]


@pytest.mark.parametrize("name", sorted(lazy_imports.LAZY_MODULES))
def test_every_lazy_module_exists(name: str) -> None:
    """A renamed or moved module must be renamed in the table too (else it would load eagerly, unnoticed)."""
    assert importlib.util.find_spec(name) is not None


def _run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    return done.stdout.strip()


def test_the_platform_cli_loads_no_database_grpc_or_protobuf_code_until_a_command_runs() -> None:
    loaded = _run(
        "import sys\n"
        "import platform_server.cli\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'sqlalchemy', 'grpc', 'alembic', 'openpyxl'}))\n"
    )
    assert loaded == "[]"


def _write_package(root: Path) -> None:
    pkg = root / "lazypkg"
    pkg.mkdir()
    ran = "import pathlib, time\npathlib.Path(__file__).with_suffix('.ran').touch()\ntime.sleep(0.2)\n"
    (pkg / "__init__.py").write_text(ran, encoding="utf-8")
    (pkg / "sub.py").write_text(f"{ran}VALUE = 42\n", encoding="utf-8")
    (pkg / "broken.py").write_text("raise RuntimeError('broken on purpose')\n", encoding="utf-8")


@pytest.fixture
def lazy_package(tmp_path: Path) -> Iterator[Path]:
    """A package `lazypkg` (slow to run, with a submodule and a broken module), imported lazily.

    Each module's code leaves `<module>.ran` beside it when it runs (reading the module would run it).
    """
    _write_package(tmp_path)
    names = frozenset({"lazypkg", "lazypkg.sub", "lazypkg.broken"})
    finder = lazy_imports._LazyFinder(names)
    sys.path.insert(0, str(tmp_path))
    sys.meta_path.insert(0, finder)
    yield tmp_path / "lazypkg"
    sys.meta_path.remove(finder)
    sys.path.remove(str(tmp_path))
    for name in names:
        sys.modules.pop(name, None)


def test_a_lazy_module_runs_at_first_use_and_its_package_stays_unloaded(lazy_package: Path) -> None:
    import lazypkg.sub as sub  # type: ignore[import-not-found]  # noqa: PLC0415  (created by the fixture)

    assert not (lazy_package / "sub.ran").exists()
    assert not (lazy_package / "__init__.ran").exists()  # importing the submodule through it did not run it
    assert sub.VALUE == 42
    assert (lazy_package / "sub.ran").exists()
    assert not (lazy_package / "__init__.ran").exists()
    lazy_imports.load(sys.modules["lazypkg"])
    assert (lazy_package / "__init__.ran").exists()


@pytest.mark.usefixtures("lazy_package")
def test_threads_using_a_lazy_module_at_once_all_see_it_whole() -> None:
    import lazypkg.sub as sub  # noqa: PLC0415  (created by the fixture)

    values: list[object] = []
    start = threading.Barrier(4)

    def use() -> None:
        start.wait()
        values.append(sub.VALUE)  # the module's code sleeps before VALUE exists

    threads = [threading.Thread(target=use) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert values == [42, 42, 42, 42]


@pytest.mark.usefixtures("lazy_package")
def test_a_module_whose_code_fails_raises_at_each_use() -> None:
    import lazypkg.broken as broken  # type: ignore[import-not-found]  # noqa: PLC0415  (created by the fixture)

    for _ in range(2):
        with pytest.raises(RuntimeError, match="broken on purpose"):
            _ = broken.anything


def test_load_runs_a_lazy_module_now() -> None:
    started = time.perf_counter()
    out = _run(
        "import sys, lazy_imports\n"
        "from platform_server.services import cases\n"
        "before = 'sqlalchemy' in sys.modules\n"
        "lazy_imports.load(cases)\n"
        "print(before, 'sqlalchemy' in sys.modules)\n"
    )
    assert out == "False True", f"{out} after {time.perf_counter() - started:.1f} s"
