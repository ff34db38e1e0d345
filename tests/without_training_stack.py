"""Run the runtime as the lean install (``pip install .``) has it: the training extra's packages
cannot be imported, as if never installed.

    python tests/without_training_stack.py patrol ARGS...   # the patrol command
    python tests/without_training_stack.py import-runtime   # every module of the runtime packages

The last line of stdout names the training packages something tried to import ("tried: none").
"""
from __future__ import annotations

import importlib
import importlib.abc
import pkgutil
import sys
from pathlib import Path

# what `.[train]` adds over `pip install .` (scipy comes with scikit-image)
TRAINING_STACK = ("torch", "torchvision", "ultralytics", "onnx", "skimage", "matplotlib", "scipy")
RUNTIME_PACKAGES = ("patrol", "api", "workers", "core", "cases", "vision", "streams", "training", "bench")
NEEDS_SYSTEM = {"bench.rtsp_serve"}  # GStreamer's Python bindings (Debian's python3-gi), not a pip package
ALEMBIC_SCRIPTS = {"cases.migrations.env"}  # run by Alembic inside its migration context (patrol db upgrade)


class NotInstalled(importlib.abc.MetaPathFinder):
    tried: set[str] = set()

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in TRAINING_STACK:
            self.tried.add(name.split(".")[0])
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


def import_runtime() -> int:
    failed = 0
    for top in RUNTIME_PACKAGES:
        package = importlib.import_module(top)
        for module in pkgutil.walk_packages(package.__path__, top + "."):
            if module.name in NEEDS_SYSTEM | ALEMBIC_SCRIPTS:
                continue
            try:
                importlib.import_module(module.name)
            except Exception as err:
                print(f"{module.name}: {type(err).__name__}: {err}", file=sys.stderr)
                failed += 1
    return 1 if failed else 0


def main(argv: list[str]) -> int:
    sys.meta_path.insert(0, NotInstalled())
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    if argv[:1] == ["import-runtime"]:
        rc = import_runtime()
    else:
        from patrol.cli import main as patrol

        rc = patrol(argv[1:])
    print("tried:", ",".join(sorted(NotInstalled.tried)) or "none", flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
