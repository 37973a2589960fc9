"""The layering rules of the device packages, checked on their imports (read with ast, not run).

A device package knows nothing of the kiosk app, the platform, gRPC, a GUI or a database; its
protocol module is pure (no I/O, no threads); and production code never loads a simulator.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

#: Every device package, at the top of the tree (docs/tree.md).
DEVICE_PACKAGES = (
    "band_reader",
    "bank_card_reader",
    "camera",
    "device_kit",
    "id_card_reader",
    "pcsc",
    "receipt_printer",
    "robot_arm",
    "uwb",
)

#: What a device package must never import (top-level module names).
FORBIDDEN_IN_DEVICES = frozenset(
    {
        "checkin",
        "platform_server",
        "expertcheckin",
        "grpc",
        "grpc_health",
        "grpc_reflection",
        "grpc_status",
        "google",
        "tkinter",
        "customtkinter",
        "sqlalchemy",
        "alembic",
        "psycopg",
        "psycopg2",
        "sqlite3",
        "fastapi",
        "starlette",
        "flask",
    }
)

#: A protocol module encodes and decodes bytes; it opens nothing and starts nothing.
FORBIDDEN_IN_PROTOCOL = frozenset({"serial", "socket", "threading", "time", "smartcard", "subprocess", "select"})

#: Modules that may load a simulator: simulators themselves, the tools that run them, the simulated
#: PC/SC world (pcscd with vpcd); the simulated world (sim_world) is outside these rules.
MAY_LOAD_SIMULATORS = ("simulator.py", "cli.py", "__main__.py", "daemon.py", "vpcd.py")


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports (absolute names), wherever the import statement stands."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _sources(*packages: str) -> list[Path]:
    return sorted(p for pkg in packages for p in (ROOT / pkg).rglob("*.py"))


def _is_simulator(module: str) -> bool:
    return module.rsplit(".", maxsplit=1)[-1] == "simulator" or ".simulator." in module


@pytest.mark.parametrize("path", _sources(*DEVICE_PACKAGES), ids=lambda p: str(p.relative_to(ROOT)))
def test_device_package_imports_no_app_platform_grpc_gui_or_database(path: Path) -> None:
    bad = sorted(m for m in imported_modules(path) if m.split(".")[0] in FORBIDDEN_IN_DEVICES)
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


@pytest.mark.parametrize(
    "path",
    [ROOT / pkg / "protocol.py" for pkg in DEVICE_PACKAGES if (ROOT / pkg / "protocol.py").exists()],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_protocol_modules_are_pure(path: Path) -> None:
    bad = sorted(m for m in imported_modules(path) if m.split(".")[0] in FORBIDDEN_IN_PROTOCOL)
    assert not bad, f"{path.relative_to(ROOT)} does I/O or threading through {bad}"


def _production_sources() -> list[Path]:
    paths = _sources(*DEVICE_PACKAGES, "checkin")
    return [
        p for p in paths if p.name not in MAY_LOAD_SIMULATORS and p.relative_to(ROOT).parts[:2] != ("checkin", "cli")
    ]


@pytest.mark.parametrize("path", _production_sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_production_code_never_loads_a_simulator(path: Path) -> None:
    bad = sorted(m for m in imported_modules(path) if _is_simulator(m))
    assert not bad, f"{path.relative_to(ROOT)} loads simulator code {bad}"


#: The kiosk app runs beside the platform, never inside it: it reaches it over gRPC only. The simulated
#: world (sim_world), which seeds the platform, plugs its commands in through an entry point.
FORBIDDEN_IN_KIOSK = frozenset({"platform_server", "sim_world"})


@pytest.mark.parametrize("path", _sources("checkin"), ids=lambda p: str(p.relative_to(ROOT)))
def test_kiosk_never_imports_the_platform_or_the_simulated_world(path: Path) -> None:
    bad = sorted(m for m in imported_modules(path) if m.split(".")[0] in FORBIDDEN_IN_KIOSK)
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_every_device_package_has_the_same_shape() -> None:
    for pkg in DEVICE_PACKAGES:
        if pkg in {"device_kit", "pcsc"}:
            continue  # the shared plumbing, not a device
        present = {p.name for p in (ROOT / pkg).glob("*.py")}
        missing = {"__init__.py", "protocol.py", "driver.py", "simulator.py", "errors.py", "models.py"} - present
        assert not missing, f"{pkg}/ lacks {sorted(missing)}"


def test_the_checker_sees_a_violation(tmp_path: Path) -> None:
    """The rules above can fail: a module that breaks each one is caught."""
    bad = tmp_path / "protocol.py"
    bad.write_text(
        "import serial\nfrom checkin.texts import T\n\ndef f():\n    from uwb.simulator import GatewaySimulator\n",
        encoding="utf-8",
    )
    found = imported_modules(bad)
    assert {"serial", "checkin.texts", "uwb.simulator"} <= found
    assert any(_is_simulator(m) for m in found)
    assert any(m.split(".")[0] in FORBIDDEN_IN_DEVICES for m in found)
    kiosk_module = tmp_path / "flow.py"
    kiosk_module.write_text("def f():\n    from platform_server.services import roster\n", encoding="utf-8")
    assert any(m.split(".")[0] in FORBIDDEN_IN_KIOSK for m in imported_modules(kiosk_module))
