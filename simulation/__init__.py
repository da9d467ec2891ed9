"""The deterministic network simulator (docs/simulation.md).

Before any module of the package loads, this checks the compiled forms of the hot
modules (simulation/native.py): one built from an older source is refused, with what to
do; with ``TOKTOK_SIM_PURE=1`` the pure sources are imported even where compiled ones
exist.
"""

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from types import ModuleType

from simulation import native


class StaleNativeBuild(ImportError):
    """A compiled hot module no longer matches its source."""


class _PureFinder(importlib.abc.MetaPathFinder):
    """Finds the hot modules' sources, ahead of their compiled forms."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        package, _, name = fullname.rpartition(".")
        if package != __name__ or name not in native.HOT_MODULES:
            return None
        return importlib.util.spec_from_file_location(fullname, native.PACKAGE_DIR / f"{name}.py")


if os.environ.get(native.PURE_ENV) == "1":
    sys.meta_path.insert(0, _PureFinder())
elif stale := native.stale_modules():
    raise StaleNativeBuild(
        f"simulation/{stale[0]}.py changed after its native build: run `make native` "
        "(or `python simulation/native.py clean` to run as plain Python)"
    )
