"""Every module imports on its own (no circular import hiding behind a lucky import order)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import pytest

import bridge

MODULES = sorted(m.name for m in pkgutil.walk_packages(bridge.__path__, prefix="bridge."))

# One interpreter for speed; bridge.* is forgotten before each import so each starts from nothing.
SCRIPT = """
import importlib, sys
failed = []
for name in sys.argv[1:]:
    for loaded in [m for m in sys.modules if m == "bridge" or m.startswith("bridge.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed.append(f"{name}: {exc!r}")
print("\\n".join(failed))
sys.exit(1 if failed else 0)
"""


def test_the_package_has_modules():
    assert "bridge.cli.main" in MODULES
    assert "bridge.poll.cycle" in MODULES


@pytest.mark.timeout(240)  # ~150 fresh imports: 10 s alone, about 55 s on a loaded 2-core machine
def test_every_module_imports_alone():
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, *MODULES], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
