"""Debian's kernel and a busybox initramfs for the tests, through tools/debian_linux.py
(downloaded once into the cache; tests that use them are marked slow)."""

import functools
import sys
from pathlib import Path

TOOLS = str(Path(__file__).resolve().parent.parent / "tools")
if TOOLS not in sys.path:
    sys.path.insert(0, TOOLS)

import debian_linux as tool  # noqa: E402


@functools.lru_cache(maxsize=None)
def debian_linux(modules=()):
    return tool.debian_linux(modules)
