"""``sendkey``: QEMU's key names (qapi QKeyCode) and their key numbers (the PC's set 1
scancodes, +0x80 for the keys with an 0xe0 prefix), as ``sendkey`` takes them:
``sendkey ctrl-alt-f1`` presses the keys in order and releases them in reverse after the
hold time; a key may also be given by number (``sendkey 0x1e``)."""

from __future__ import annotations

from devicemodel.monitor.parser import MonitorError

_ROWS = {
    0x02: "1 2 3 4 5 6 7 8 9 0 minus equal backspace tab q w e r t y u i o p bracket_left "
          "bracket_right ret ctrl a s d f g h j k l semicolon apostrophe grave_accent shift "
          "backslash z x c v b n m comma dot slash shift_r kp_multiply alt spc caps_lock "
          "f1 f2 f3 f4 f5 f6 f7 f8 f9 f10 num_lock scroll_lock kp_7 kp_8 kp_9 kp_subtract "
          "kp_4 kp_5 kp_6 kp_add kp_1 kp_2 kp_3 kp_0 kp_decimal",
}
KEY_NUMBERS = {"esc": 0x01, "less": 0x56, "f11": 0x57, "f12": 0x58, "sysrq": 0x54,
               "kp_enter": 0x9C, "ctrl_r": 0x9D, "kp_divide": 0xB5, "print": 0xB7,
               "alt_r": 0xB8, "home": 0xC7, "up": 0xC8, "pgup": 0xC9, "left": 0xCB,
               "right": 0xCD, "end": 0xCF, "down": 0xD0, "pgdn": 0xD1, "insert": 0xD2,
               "delete": 0xD3, "meta_l": 0xDB, "meta_r": 0xDC, "menu": 0xDD, "pause": 0xC6}
for _first, _names in _ROWS.items():
    KEY_NUMBERS.update({name: _first + i for i, name in enumerate(_names.split())})
ALIASES = {"shift_l": "shift", "ctrl_l": "ctrl", "alt_l": "alt", "enter": "ret",
           "return": "ret", "space": "spc", "escape": "esc"}
DEFAULT_HOLD_MS = 100


def parse_keys(text: str) -> list[int]:
    """``ctrl-alt-f1`` -> key numbers; MonitorError("invalid parameter: NAME") else."""
    numbers = []
    for name in text.split("-"):
        key = ALIASES.get(name.lower(), name.lower())
        if key in KEY_NUMBERS:
            numbers.append(KEY_NUMBERS[key])
            continue
        try:
            value = int(name, 0)
        except ValueError:
            value = -1
        if not 0 < value < 0x100:
            raise MonitorError(f"invalid parameter: {name}")
        numbers.append(value)
    return numbers
