"""Start-up speed of the command-line tools, bought in one place: modules that load on first use.

The modules named in `LAZY_MODULES` are imported as usual, at the top of the modules that use them
(`from platform_server.services import imports`, `import openpyxl`), but their code runs only when
one of their attributes is first read. So `platform-server --help` does not load SQLAlchemy, gRPC
or protobuf, and a command loads only what it touches. (Like `importlib.util.LazyLoader`, but safe
when two threads first use a module at once, and a package stays unloaded while only its
submodules are imported through it.)

`install()` is called by the packages with command lines (`platform_server`, `checkin`,
`sim_world`) when they are imported, so tests run the same loading as the installed tools.

Two rules keep a module lazy: import the module, not a name from it (`from pkg import mod` or
`import pkg.mod as mod`, then `mod.Name`; `from mod import Name` loads `mod` at once; `from pkg
import mod` runs a lazy `pkg`, `import pkg.mod as mod` does not), and do not read its attributes at import
time (annotations are strings under `from __future__ import annotations`). Names used only in
annotations go under `if TYPE_CHECKING:`. `tests/unit/test_lazy_imports.py` keeps function-local
imports out of the code, except the few it lists with their reason.
"""

from __future__ import annotations

import importlib.machinery
import sys
import threading
import types
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from collections.abc import Sequence
    from importlib.abc import Loader

# Heavy to import and needed by only some commands: the database and service layer (SQLAlchemy),
# the gRPC client and server, generated protobuf messages, spreadsheets, images, the Tk UI.
LAZY_MODULES: frozenset[str] = frozenset(
    {
        # platform: composition root, server, remote client, configuration
        "platform_server.bootstrap",
        "platform_server.cli",
        "platform_server.config",
        "platform_server.console.serve",
        "platform_server.db.engine",
        "platform_server.db.models",
        "platform_server.db.unit_of_work",
        "platform_server.dev_certs",
        "platform_server.face.dlib_verifier",
        "platform_server.face.liveness_check",
        "platform_server.face.pool",
        "platform_server.log_masking",
        "platform_server.remote",
        "platform_server.server",
        "platform_server.uwb_delivery",
        "platform_server.uwb_process",
        # platform services (each pulls SQLAlchemy and the models)
        "platform_server.services.accounts",
        "platform_server.services.audit",
        "platform_server.services.audit_chain",
        "platform_server.services.batches",
        "platform_server.services.cases",
        "platform_server.services.demo",
        "platform_server.services.exports",
        "platform_server.services.face_attempts",
        "platform_server.services.identify",
        "platform_server.services.imports",
        "platform_server.services.key_rotation",
        "platform_server.services.keyring",
        "platform_server.services.kiosk_access",
        "platform_server.services.kiosks",
        "platform_server.services.slips",
        "platform_server.services.roster",
        "platform_server.services.spreadsheets",
        "platform_server.services.statistics",
        "platform_server.services.timeline",
        "platform_server.services.reader_process",
        "uwb.payload",
        # generated messages and protobuf helpers
        "expertcheckin.v1.organiser_pb2",
        "google.protobuf.json_format",
        # kiosk: the app, its UI and the device libraries (for diagnostics and simulators)
        "band_reader",
        "band_reader.errors",
        "band_reader.simulator",
        "bank_card_reader",
        "bank_card_reader.errors",
        "bank_card_reader.simulator",
        "checkin.app",
        "checkin.config",
        "checkin.flow.runtime",
        "checkin.speech",
        "checkin.ui.theme",
        "checkin.ui.window",
        "id_card_reader",
        "id_card_reader.errors",
        "id_card_reader.simulator",
        "pcsc",
        "pcsc.errors",
        "serial",  # pyserial: the package too, so `serial.tools.list_ports` stays unloaded for --help
        "serial.tools",
        "serial.tools.list_ports",
        "receipt_printer.simulator",
        # the simulated world's commands
        "sim_world.live_demo",
        "sim_world.model",
        "sim_world.runner",
        "sim_world.ui_mode",
        "sim_world.world",
        # third-party libraries only some commands need
        "grpc_health.v1.health_pb2",
        "grpc_health.v1.health_pb2_grpc",
        "customtkinter",
        "tkinter",
        "alembic.command",
        "alembic.config",
        "alembic.script",
        "openpyxl",
        "personal_data.bank_card",
        "personal_data.crypto",
        "python_calamine",
        "rich.progress",
    }
)


class _LazyModule(types.ModuleType):
    """A module whose code has not run yet: reading an attribute it does not have yet runs it.

    What the import system set before the code runs (`__spec__`, `__path__`, ... and submodules
    imported through the package) is read without running it, so `import pkg.sub as sub` leaves
    `pkg` unloaded until it is used.
    """

    def __getattribute__(self, name: str) -> Any:
        namespace: dict[str, Any] = object.__getattribute__(self, "__dict__")
        value = namespace.get(name, _MISSING)
        if value is _MISSING or not (name.startswith("__") or isinstance(value, types.ModuleType)):
            _execute(self)
        return types.ModuleType.__getattribute__(self, name)


_MISSING = object()


class _DeferringLoader:  # a Loader (not subclassing importlib.abc: it costs ~10 ms to import)
    """Wraps a module's own loader: creating the module as usual, running its code on first use."""

    def __init__(self, loader: importlib.machinery.SourceFileLoader) -> None:
        self.loader = loader
        self.lock = threading.RLock()
        self.running = False

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        """The module object the wrapped loader would make (None: the default one)."""
        return self.loader.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        """Defer: the module's code runs at the first read of an attribute (see `_execute`)."""
        module.__class__ = _LazyModule


def _execute(module: types.ModuleType) -> None:
    """Run a lazy module's code once; other threads wait for it, and its own import cycles see it half-made.

    A module whose code raised stays lazy, so the next use raises the error again.
    """
    spec = module.__spec__
    if spec is None or not isinstance(spec.loader, _DeferringLoader):
        return
    deferring = spec.loader
    with deferring.lock:
        if not isinstance(module, _LazyModule) or deferring.running:
            return  # run by another thread meanwhile, or an import cycle of its own code
        deferring.running = True
        try:
            deferring.loader.exec_module(module)
        finally:
            deferring.running = False
        _make_plain(module)
        spec.loader = module.__loader__ = deferring.loader  # for inspect, pkgutil and reloads


def _make_plain(module: types.ModuleType) -> None:
    module.__class__ = types.ModuleType


class _LazyFinder:  # a MetaPathFinder
    """Finds the modules of `LAZY_MODULES` as the path finder would, with a loader that defers their code."""

    def __init__(self, names: frozenset[str]) -> None:
        self.names = names

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        """A lazy spec for a listed module found on the path; None (the next finder decides) otherwise."""
        if fullname not in self.names:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is None or not isinstance(spec.loader, importlib.machinery.SourceFileLoader):
            return spec  # extension modules and the like load at once, as usual
        spec.loader = cast("Loader", _DeferringLoader(spec.loader))  # duck-typed: see the class
        return spec


def install(names: frozenset[str] = LAZY_MODULES) -> None:
    """Put the lazy finder first on `sys.meta_path`, once per process."""
    if not any(isinstance(finder, _LazyFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _LazyFinder(names))


def load(*modules: types.ModuleType) -> None:
    """Run the code of lazily imported modules now (e.g. to time it as its own phase)."""
    for module in modules:
        _execute(module)
