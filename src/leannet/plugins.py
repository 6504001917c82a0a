"""The one registry auto-import: modules that register models, data sources, task kinds or
commands are imported once, when a registry is first read, so adding one is adding a file."""
from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from types import ModuleType

_DONE: dict[str, list[ModuleType]] = {}


def import_modules(package: str, skip: tuple[str, ...] = ("registry",)) -> list[ModuleType]:
    """Import every module of `package` (once), except those named in `skip` or starting '_'."""
    if package not in _DONE:
        module = importlib.import_module(package)
        _DONE[package] = [importlib.import_module(f"{package}.{info.name}")
                          for info in sorted(pkgutil.iter_modules(module.__path__),
                                             key=lambda m: m.name)
                          if info.name not in skip and not info.name.startswith("_")]
    return _DONE[package]


def import_named(package: str, name: str) -> None:
    """Import `<sub>.<name>` of every subpackage of `package` that has one (e.g. `*.kind`)."""
    key = f"{package}/*.{name}"
    if key in _DONE:
        return
    _DONE[key] = []
    module = importlib.import_module(package)
    for info in sorted(pkgutil.iter_modules(module.__path__), key=lambda m: m.name):
        # look for the file rather than ask importlib, which would import the subpackage itself
        if info.ispkg and any((Path(p) / info.name / f"{name}.py").is_file()
                              for p in module.__path__):
            importlib.import_module(f"{package}.{info.name}.{name}")
