"""The deterministic network simulator (docs/simulation.md).

Before any module of the package loads, this checks the compiled forms of the hot
modules (simulation/native.py). Where one was built from an older source (mid-rebuild,
or the source was edited since), or with ``TOKTOK_SIM_PURE=1``, the pure sources are
imported instead: a run gives the same output either way, only slower, and nothing else
of the ``toktok`` command depends on the build. ``NATIVE`` says which it is.
"""

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from types import ModuleType

from simulation import native


class _PureFinder(importlib.abc.MetaPathFinder):
    """Finds the hot modules' sources, ahead of their compiled forms."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        package, _, name = fullname.rpartition(".")
        if package != __name__ or name not in native.HOT_MODULES:
            return None
        return importlib.util.spec_from_file_location(fullname, native.PACKAGE_DIR / f"{name}.py")


NATIVE = (
    os.environ.get(native.PURE_ENV) != "1"
    and all(native.compiled_files(name) for name in native.HOT_MODULES)
    and not native.stale_modules()
)
if not NATIVE:
    sys.meta_path.insert(0, _PureFinder())
