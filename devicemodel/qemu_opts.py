"""QEMU's option-argument syntax: ``value,key=value,key=value`` (QemuOpts).

A doubled comma stands for a literal comma. The first element may omit its key, which
is then the option's implied key (``driver`` for ``-device``, ``size`` for ``-m``). An
element without ``=`` elsewhere is a flag: ``key`` means ``key=on``.
"""

from __future__ import annotations

import re
from typing import Optional

from devicemodel.errors import ConfigError


def split_elements(text: str) -> list[str]:
    """``"a,b,,c"`` -> ``["a", "b,c"]``."""
    elements, current, i = [], [], 0
    while i < len(text):
        if text[i] == ",":
            if text[i + 1:i + 2] == ",":
                current.append(",")
                i += 2
                continue
            elements.append("".join(current))
            current = []
        else:
            current.append(text[i])
        i += 1
    elements.append("".join(current))
    return elements


def parse_opts(text: str, implied_key: Optional[str] = None) -> list[tuple[str, str]]:
    """The (key, value) pairs of ``text``, in order."""
    pairs = []
    for index, element in enumerate(split_elements(text)):
        key, eq, value = element.partition("=")
        if not eq:
            if index == 0 and implied_key is not None and element != "help":
                key, value = implied_key, element
            else:
                value = "on"
        if not key:
            raise ConfigError(f"invalid parameter '{element}'")
        pairs.append((key, value))
    return pairs


def parse_uint(text: str) -> int:
    """An unsigned integer as QEMU reads one: decimal, 0x hexadecimal or 0 octal; else ValueError."""
    if re.fullmatch(r"0[xX][0-9a-fA-F]+", text):
        return int(text, 16)
    if re.fullmatch(r"0[0-7]*", text):
        return int(text, 8)
    if re.fullmatch(r"[1-9][0-9]*", text):
        return int(text)
    raise ValueError(f"not an unsigned integer: {text!r}")


def parse_bool(name: str, text: str) -> bool:
    """A boolean option value as QEMU accepts one (on/off, yes/no, true/false, y/n)."""
    if text in ("on", "yes", "true", "y"):
        return True
    if text in ("off", "no", "false", "n"):
        return False
    raise ConfigError(f"Parameter '{name}' expects 'on' or 'off'")
