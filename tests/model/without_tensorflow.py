"""`python -m tests.model.without_tensorflow MODULE ARGS…`: run MODULE as `python -m` would, with
TensorFlow as absent as on the GPU hosts (JAX, no TensorFlow): `find_spec("tensorflow")` is None
and importing it fails, although it is installed in this environment."""

from __future__ import annotations

import importlib.machinery
import runpy
import sys


class _PathFinderWithoutTensorFlow(importlib.machinery.PathFinder):
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name.partition(".")[0] == "tensorflow":
            return None
        return super().find_spec(name, path, target)


if __name__ == "__main__":
    if "tensorflow" in sys.modules:
        raise SystemExit("TensorFlow was imported before it could be hidden")
    sys.meta_path[:] = [_PathFinderWithoutTensorFlow if finder is importlib.machinery.PathFinder else finder for finder in sys.meta_path]
    module, sys.argv = sys.argv[1], sys.argv[1:]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
    if "tensorflow" in sys.modules:
        raise SystemExit(f"{module} imported TensorFlow")
