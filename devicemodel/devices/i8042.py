"""The 8042 keyboard controller of the PC with its PS/2 keyboard and mouse, after QEMU's
hw/input/pckbd.c and hw/input/ps2.c (their register behaviour, defaults and replies).

Ports: 0x60 data (read the output buffer; write a byte to the keyboard, or the
parameter of a pending controller command), 0x64 status (read) and controller
command (write). Status: OBF (bit 0), SELFTEST/system flag (2), CMD, last write was a
command (3), UNLOCKED (4), AUX OBF (5).

Controller commands: 0x20/0x60 read/write the command byte (interrupt enables,
interface disables, 0x40 = translate scancodes to set 1), 0xa7/0xa8 and 0xad/0xae
disable/enable the mouse/keyboard interface, 0xa9/0xab interface tests (0x00),
0xaa self-test (0x55), 0xc0 input port, 0xd0/0xd1 read/write the output port (bit 0
low resets the CPU, bit 1 is A20), 0xd2/0xd3 write the keyboard/mouse output buffer,
0xd4 send a byte to the mouse, 0xdd/0xdf A20 off/on, 0xf0..0xff pulse output port
bits (bit 0 low: CPU reset; 0xfe is the usual reset).

Data reach the output buffer one byte at a time: a controller reply first, then the
keyboard's queue, then the mouse's; a byte read from port 0x60 is replaced by the next
one at once. OBF with data from the keyboard raises IRQ 1 (command byte bit 0), from
the mouse IRQ 12 (bit 1); ``irq_kbd(level)`` and ``irq_mouse(level)`` follow them.
While an interface is disabled its data wait in its queue.

Side effects: ``set_a20(level)`` and ``request_reset(hard)`` (always a soft reset:
the 8042 pulses the CPU's reset line only).

Keys: ``send_key(keycode, down)`` takes QEMU's key numbers (``sendkey 0x1e``): the
set 1 scancode, with 0x80 added for the keys that have an 0xe0 prefix. The keyboard
sends them in its current scancode set (1 or 2; it ignores keys in set 3), and the
controller translates set 2 to set 1 while command byte bit 6 is set. Pause and Print
Screen, whose sequences depend on the modifiers, are not special-cased.
"""

from __future__ import annotations

from collections import deque
from typing import Callable

from devicemodel.address_space import Region

# Status register
STAT_OBF = 0x01
STAT_SELFTEST = 0x04
STAT_CMD = 0x08
STAT_UNLOCKED = 0x10
STAT_MOUSE_OBF = 0x20

# Command byte ("mode")
MODE_KBD_INT = 0x01
MODE_MOUSE_INT = 0x02
MODE_DISABLE_KBD = 0x10
MODE_DISABLE_MOUSE = 0x20
MODE_KCC = 0x40          # translate to scancode set 1

# Output port
OUT_RESET = 0x01         # 0 = CPU held in reset
OUT_A20 = 0x02
OUT_OBF = 0x10
OUT_MOUSE_OBF = 0x20
OUT_ONES = 0xCC          # the bits QEMU keeps set

# Controller commands
CCMD_READ_MODE = 0x20
CCMD_WRITE_MODE = 0x60
CCMD_MOUSE_DISABLE = 0xA7
CCMD_MOUSE_ENABLE = 0xA8
CCMD_TEST_MOUSE = 0xA9
CCMD_SELF_TEST = 0xAA
CCMD_KBD_TEST = 0xAB
CCMD_KBD_DISABLE = 0xAD
CCMD_KBD_ENABLE = 0xAE
CCMD_READ_INPORT = 0xC0
CCMD_READ_OUTPORT = 0xD0
CCMD_WRITE_OUTPORT = 0xD1
CCMD_WRITE_OBUF = 0xD2
CCMD_WRITE_AUX_OBUF = 0xD3
CCMD_WRITE_MOUSE = 0xD4
CCMD_DISABLE_A20 = 0xDD
CCMD_ENABLE_A20 = 0xDF
CCMD_PULSE_BITS_3_0 = 0xF0
CCMD_RESET = 0xFE
CCMD_NO_OP = 0xFF
DATA_COMMANDS = (CCMD_WRITE_MODE, CCMD_WRITE_OBUF, CCMD_WRITE_AUX_OBUF, CCMD_WRITE_MOUSE,
                 CCMD_WRITE_OUTPORT)
SELF_TEST_OK = 0x55
INPUT_PORT = 0x80        # keyboard not inhibited

# Keyboard commands and replies
KBD_CMD_SET_LEDS = 0xED
KBD_CMD_ECHO = 0xEE
KBD_CMD_SCANCODE = 0xF0
KBD_CMD_GET_ID = 0xF2
KBD_CMD_SET_RATE = 0xF3
KBD_CMD_ENABLE = 0xF4
KBD_CMD_RESET_DISABLE = 0xF5
KBD_CMD_RESET_ENABLE = 0xF6
KBD_CMD_SET_TYPEMATIC = 0xFA
KBD_CMD_SET_MAKE_BREAK = 0xFC
KBD_CMD_RESET = 0xFF
KBD_REPLY_POR = 0xAA
KBD_REPLY_ID = 0xAB
KBD_REPLY_ACK = 0xFA
KBD_REPLY_RESEND = 0xFE

# Mouse commands
AUX_SET_SCALE11 = 0xE6
AUX_SET_SCALE21 = 0xE7
AUX_SET_RES = 0xE8
AUX_GET_SCALE = 0xE9
AUX_SET_STREAM = 0xEA
AUX_POLL = 0xEB
AUX_RESET_WRAP = 0xEC
AUX_SET_WRAP = 0xEE
AUX_SET_REMOTE = 0xF0
AUX_GET_TYPE = 0xF2
AUX_SET_SAMPLE = 0xF3
AUX_ENABLE_DEV = 0xF4
AUX_DISABLE_DEV = 0xF5
AUX_SET_DEFAULT = 0xF6
AUX_RESET = 0xFF
AUX_ACK = 0xFA
MOUSE_STATUS_REMOTE = 0x40
MOUSE_STATUS_ENABLED = 0x20
MOUSE_STATUS_SCALE21 = 0x10

PS2_QUEUE_SIZE = 16

# The 8042's set 2 -> set 1 translation (QEMU's translate_table), for codes below 0x80;
# 0x80 and above translate to themselves except F7 (0x83) and Alt+SysRq (0x84).
_TRANSLATE_LOW = (
    0xff, 0x43, 0x41, 0x3f, 0x3d, 0x3b, 0x3c, 0x58, 0x64, 0x44, 0x42, 0x40, 0x3e, 0x0f, 0x29, 0x59,
    0x65, 0x38, 0x2a, 0x70, 0x1d, 0x10, 0x02, 0x5a, 0x66, 0x71, 0x2c, 0x1f, 0x1e, 0x11, 0x03, 0x5b,
    0x67, 0x2e, 0x2d, 0x20, 0x12, 0x05, 0x04, 0x5c, 0x68, 0x39, 0x2f, 0x21, 0x14, 0x13, 0x06, 0x5d,
    0x69, 0x31, 0x30, 0x23, 0x22, 0x15, 0x07, 0x5e, 0x6a, 0x72, 0x32, 0x24, 0x16, 0x08, 0x09, 0x5f,
    0x6b, 0x33, 0x25, 0x17, 0x18, 0x0b, 0x0a, 0x60, 0x6c, 0x34, 0x35, 0x26, 0x27, 0x19, 0x0c, 0x61,
    0x6d, 0x73, 0x28, 0x74, 0x1a, 0x0d, 0x62, 0x6e, 0x3a, 0x36, 0x1c, 0x1b, 0x75, 0x2b, 0x63, 0x76,
    0x55, 0x56, 0x77, 0x78, 0x79, 0x7a, 0x0e, 0x7b, 0x7c, 0x4f, 0x7d, 0x4b, 0x47, 0x7e, 0x7f, 0x6f,
    0x52, 0x53, 0x50, 0x4c, 0x4d, 0x48, 0x01, 0x45, 0x57, 0x4e, 0x51, 0x4a, 0x37, 0x49, 0x46, 0x54,
)
TRANSLATE = bytes(_TRANSLATE_LOW) + bytes((0x80, 0x81, 0x82, 0x41, 0x54)) + bytes(range(0x85, 0x100))
# Set 1 -> set 2: the inverse (F7 and SysRq take their 0x83/0x84 codes).
SET1_TO_SET2 = {TRANSLATE[code2]: code2 for code2 in range(0x85) if TRANSLATE[code2] < 0x80}


def _no_irq(level: int) -> None:
    pass


def _no_a20(level: int) -> None:
    pass


def _no_reset(hard: bool) -> None:
    pass


class _Ps2Port:
    """A PS/2 device's side of the wire: its byte queue and the line telling the
    controller that it has data (``has_data(level)``)."""

    def __init__(self, has_data: Callable[[int], None]):
        self.has_data = has_data
        self.queue: deque[int] = deque()
        self.last = 0            # read again when the queue is empty (QEMU, for EMM386)

    def queue_bytes(self, *data: int) -> None:
        """Queue a reply or event as a whole, or drop it if the queue lacks room."""
        if PS2_QUEUE_SIZE - len(self.queue) < len(data):
            return
        self.queue.extend(data)
        self.has_data(1)

    def read(self) -> int:
        if self.queue:
            self.last = self.queue.popleft()
            self.has_data(0)
            if self.queue:
                self.has_data(1)
        return self.last


class Ps2Keyboard(_Ps2Port):
    """An MF2 keyboard: scancode sets 1..3, command replies ahead of queued keys."""

    def __init__(self, has_data: Callable[[int], None]):
        super().__init__(has_data)
        self.replies: deque[int] = deque()  # command replies, read before the key queue
        self.translate = False
        self.reset()

    def reset(self) -> None:
        self.write_cmd = None
        self.need_high_bit = False
        self._reset_keyboard()

    def _reset_keyboard(self) -> None:
        """The keyboard's own reset (commands 0xff, 0xf5, 0xf6)."""
        self.scan_enabled = True
        self.scancode_set = 2
        self.leds = 0
        self.queue.clear()
        self.replies.clear()

    def _reply(self, *data: int) -> None:
        self.replies.extend(data)
        self.has_data(1)

    def read(self) -> int:
        if self.replies:
            self.last = self.replies.popleft()
            self.has_data(0)
            if self.replies or self.queue:
                self.has_data(1)
            return self.last
        return super().read()

    def write(self, value: int) -> None:
        """A byte from the host: a command, or a command's parameter."""
        self.replies.clear()     # unread replies to an earlier command are dropped
        command, self.write_cmd = self.write_cmd, None
        if command == KBD_CMD_SCANCODE:
            if value == 0:
                current = self.scancode_set
                self._reply(KBD_REPLY_ACK, TRANSLATE[current] if self.translate else current)
            elif value <= 3:
                self.scancode_set = value
                self._reply(KBD_REPLY_ACK)
            else:
                self._reply(KBD_REPLY_RESEND)
        elif command == KBD_CMD_SET_LEDS:
            self.leds = value
            self._reply(KBD_REPLY_ACK)
        elif command in (KBD_CMD_SET_RATE, KBD_CMD_SET_MAKE_BREAK):
            self._reply(KBD_REPLY_ACK)
        elif value == 0x00:
            self._reply(KBD_REPLY_ACK)
        elif value == KBD_CMD_GET_ID:
            self._reply(KBD_REPLY_ACK, KBD_REPLY_ID, 0x41 if self.translate else 0x83)
        elif value == KBD_CMD_ECHO:
            self._reply(KBD_CMD_ECHO)
        elif value == KBD_CMD_ENABLE:
            self.scan_enabled = True
            self._reply(KBD_REPLY_ACK)
        elif value in (KBD_CMD_SCANCODE, KBD_CMD_SET_LEDS, KBD_CMD_SET_RATE, KBD_CMD_SET_MAKE_BREAK):
            self.write_cmd = value
            self._reply(KBD_REPLY_ACK)
        elif value in (KBD_CMD_RESET_DISABLE, KBD_CMD_RESET_ENABLE):
            self._reset_keyboard()
            self.scan_enabled = value == KBD_CMD_RESET_ENABLE
            self._reply(KBD_REPLY_ACK)
        elif value == KBD_CMD_RESET:
            self._reset_keyboard()
            self._reply(KBD_REPLY_ACK, KBD_REPLY_POR)
        elif value == KBD_CMD_SET_TYPEMATIC:
            self._reply(KBD_REPLY_ACK)
        else:
            self._reply(KBD_REPLY_RESEND)

    def send_key(self, keycode: int, down: bool) -> None:
        """A key press or release, by QEMU key number (set 1 code, +0x80 for 0xe0 keys)."""
        if not self.scan_enabled:
            return               # no events while disabled: the stream would be corrupt
        code = keycode & 0x7F
        prefix = (0xE0,) if keycode & 0x80 else ()
        if self.scancode_set == 1:
            sequence = prefix + (code | (0 if down else 0x80),)
        elif self.scancode_set == 2 and code in SET1_TO_SET2:
            sequence = prefix + (() if down else (0xF0,)) + (SET1_TO_SET2[code],)
        else:
            return
        for byte in sequence:
            self._put(byte)

    def _put(self, byte: int) -> None:
        """One byte on the wire, through the controller's translation if it is on."""
        if not self.translate:
            self.queue_bytes(byte)
        elif byte == 0xF0:
            self.need_high_bit = True
        else:
            self.queue_bytes(TRANSLATE[byte] | (0x80 if self.need_high_bit else 0))
            self.need_high_bit = False

    def save_state(self) -> dict:
        return {"queue": list(self.queue), "replies": list(self.replies), "last": self.last,
                "write_cmd": self.write_cmd, "scan_enabled": self.scan_enabled,
                "scancode_set": self.scancode_set, "leds": self.leds,
                "translate": self.translate, "need_high_bit": self.need_high_bit}

    def load_state(self, state: dict) -> None:
        self.queue = deque(state["queue"])
        self.replies = deque(state["replies"])
        for name in ("last", "write_cmd", "scan_enabled", "scancode_set", "leds", "translate",
                     "need_high_bit"):
            setattr(self, name, state[name])


class Ps2Mouse(_Ps2Port):
    """A standard PS/2 mouse (device ID 0) that answers the host's commands."""

    def __init__(self, has_data: Callable[[int], None]):
        super().__init__(has_data)
        self.reset()

    def reset(self) -> None:
        self.write_cmd = None
        self.status = 0
        self.resolution = 2
        self.sample_rate = 100
        self.wrap = False
        self.queue.clear()

    def write(self, value: int) -> None:
        command, self.write_cmd = self.write_cmd, None
        if command == AUX_SET_SAMPLE:
            self.sample_rate = value
            self.queue_bytes(AUX_ACK)
            return
        if command == AUX_SET_RES:
            self.resolution = value
            self.queue_bytes(AUX_ACK)
            return
        if self.wrap:
            if value == AUX_RESET_WRAP:
                self.wrap = False
                self.queue_bytes(AUX_ACK)
                return
            if value != AUX_RESET:
                self.queue_bytes(value)  # wrap mode echoes
                return
        if value == AUX_SET_SCALE11:
            self.status &= ~MOUSE_STATUS_SCALE21
        elif value == AUX_SET_SCALE21:
            self.status |= MOUSE_STATUS_SCALE21
        elif value == AUX_SET_STREAM:
            self.status &= ~MOUSE_STATUS_REMOTE
        elif value == AUX_SET_WRAP:
            self.wrap = True
        elif value == AUX_SET_REMOTE:
            self.status |= MOUSE_STATUS_REMOTE
        elif value == AUX_GET_TYPE:
            self.queue_bytes(AUX_ACK, 0)
            return
        elif value in (AUX_SET_RES, AUX_SET_SAMPLE):
            self.write_cmd = value
        elif value == AUX_GET_SCALE:
            self.queue_bytes(AUX_ACK, self.status, self.resolution, self.sample_rate)
            return
        elif value == AUX_POLL:
            self.queue_bytes(AUX_ACK, 0x08, 0, 0)  # no movement, no buttons
            return
        elif value == AUX_ENABLE_DEV:
            self.status |= MOUSE_STATUS_ENABLED
        elif value == AUX_DISABLE_DEV:
            self.status &= ~MOUSE_STATUS_ENABLED
        elif value in (AUX_SET_DEFAULT, AUX_RESET):
            self.status, self.resolution, self.sample_rate = 0, 2, 100
            if value == AUX_RESET:
                self.queue.clear()
                self.queue_bytes(AUX_ACK, 0xAA, 0)
                return
        else:
            return               # unknown commands get no answer, as in QEMU
        self.queue_bytes(AUX_ACK)

    def save_state(self) -> dict:
        return {"queue": list(self.queue), "last": self.last, "write_cmd": self.write_cmd,
                "status": self.status, "resolution": self.resolution,
                "sample_rate": self.sample_rate, "wrap": self.wrap}

    def load_state(self, state: dict) -> None:
        self.queue = deque(state["queue"])
        for name in ("last", "write_cmd", "status", "resolution", "sample_rate", "wrap"):
            setattr(self, name, state[name])


# Where the output buffer's byte comes from
SOURCE_NONE, SOURCE_CONTROLLER, SOURCE_KBD, SOURCE_MOUSE = 0, 1, 2, 3


class I8042:
    """The controller at ports ``iobase`` and ``iobase + 4``."""

    def __init__(self, irq_kbd: Callable[[int], None] = _no_irq,
                 irq_mouse: Callable[[int], None] = _no_irq,
                 set_a20: Callable[[int], None] = _no_a20,
                 request_reset: Callable[[bool], None] = _no_reset,
                 iobase: int = 0x60, name: str = "i8042"):
        self.irq_kbd = irq_kbd
        self.irq_mouse = irq_mouse
        self.set_a20 = set_a20
        self.request_reset = request_reset
        self.name = name
        self.regions = (
            Region(base=iobase, size=1, name=f"{name}-data", read=self._read_data,
                   write=self._write_data, owner=self, sizes=(1, 2, 4), impl_size=1),
            Region(base=iobase + 4, size=1, name=f"{name}-cmd", read=self._read_status,
                   write=self._write_command, owner=self, sizes=(1, 2, 4), impl_size=1),
        )
        self._kbd_pending = False
        self._mouse_pending = False
        self.keyboard = Ps2Keyboard(self._keyboard_has_data)
        self.mouse = Ps2Mouse(self._mouse_has_data)
        self._irq_levels = [0, 0]
        self.reset()

    def reset(self) -> None:
        self.mode = MODE_KBD_INT | MODE_MOUSE_INT
        self.status = STAT_CMD | STAT_UNLOCKED
        self.outport = OUT_RESET | OUT_A20 | OUT_ONES
        self.write_cmd = 0
        self.controller_byte = None      # a controller reply waiting for the output buffer
        self.controller_aux = False      # ... that appears to come from the mouse (0xd3)
        self.source = SOURCE_NONE
        self.obdata = 0
        self.keyboard.reset()
        self.keyboard.translate = False
        self.mouse.reset()
        self._kbd_pending = self._mouse_pending = False
        self._update_irq_lines()

    # --- the output buffer ------------------------------------------------------------

    def _keyboard_has_data(self, level: int) -> None:
        self._kbd_pending = bool(level)
        self._refill()

    def _mouse_has_data(self, level: int) -> None:
        self._mouse_pending = bool(level)
        self._refill()

    def _next_source(self) -> int:
        if self.controller_byte is not None:
            return SOURCE_CONTROLLER
        if self._kbd_pending and not self.mode & MODE_DISABLE_KBD:
            return SOURCE_KBD
        if self._mouse_pending and not self.mode & MODE_DISABLE_MOUSE:
            return SOURCE_MOUSE
        return SOURCE_NONE

    def _refill(self) -> None:
        """Present the next byte's source in the status if the output buffer is empty."""
        if self.status & STAT_OBF:
            return
        self.source = self._next_source()
        if self.source != SOURCE_NONE:
            mouse = self.source == SOURCE_MOUSE or (self.source == SOURCE_CONTROLLER
                                                   and self.controller_aux)
            self.status |= STAT_OBF | (STAT_MOUSE_OBF if mouse else 0)
            self.outport |= OUT_OBF | (OUT_MOUSE_OBF if mouse else 0)
        self._update_irq_lines()

    def _update_irq_lines(self) -> None:
        kbd = mouse = 0
        if self.status & STAT_OBF:
            if self.status & STAT_MOUSE_OBF:
                mouse = 1 if self.mode & MODE_MOUSE_INT else 0
            else:
                kbd = 1 if self.mode & MODE_KBD_INT else 0
        if kbd != self._irq_levels[0]:
            self._irq_levels[0] = kbd
            self.irq_kbd(kbd)
        if mouse != self._irq_levels[1]:
            self._irq_levels[1] = mouse
            self.irq_mouse(mouse)

    def _queue_controller(self, value: int, aux: bool = False) -> None:
        self.controller_byte = value
        self.controller_aux = aux
        self._refill()

    # --- the guest's side -------------------------------------------------------------

    def _read_status(self, offset: int, size: int) -> int:
        return self.status

    def _read_data(self, offset: int, size: int) -> int:
        if not self.status & STAT_OBF:
            return self.obdata   # nothing new: the last byte again
        self.status &= ~(STAT_OBF | STAT_MOUSE_OBF)
        self.outport &= ~(OUT_OBF | OUT_MOUSE_OBF)
        self._update_irq_lines()
        source, self.source = self.source, SOURCE_NONE
        if source == SOURCE_CONTROLLER:
            self.obdata, self.controller_byte = self.controller_byte, None
        elif source == SOURCE_KBD:
            self.obdata = self.keyboard.read()
        else:
            self.obdata = self.mouse.read()
        self._refill()
        return self.obdata

    def _write_command(self, offset: int, size: int, value: int) -> None:
        self.status |= STAT_CMD
        if value & CCMD_PULSE_BITS_3_0 == CCMD_PULSE_BITS_3_0:
            value = CCMD_NO_OP if value & 1 else CCMD_RESET
        if value == CCMD_READ_MODE:
            self._queue_controller(self.mode)
        elif value in DATA_COMMANDS:
            self.write_cmd = value
        elif value == CCMD_MOUSE_DISABLE:
            self.mode |= MODE_DISABLE_MOUSE
        elif value == CCMD_MOUSE_ENABLE:
            self.mode &= ~MODE_DISABLE_MOUSE
            self._refill()
        elif value in (CCMD_TEST_MOUSE, CCMD_KBD_TEST):
            self._queue_controller(0x00)     # interface OK
        elif value == CCMD_SELF_TEST:
            self.status |= STAT_SELFTEST
            self._queue_controller(SELF_TEST_OK)
        elif value == CCMD_KBD_DISABLE:
            self.mode |= MODE_DISABLE_KBD
        elif value == CCMD_KBD_ENABLE:
            self.mode &= ~MODE_DISABLE_KBD
            self._refill()
        elif value == CCMD_READ_INPORT:
            self._queue_controller(INPUT_PORT)
        elif value == CCMD_READ_OUTPORT:
            self._queue_controller(self.outport)
        elif value == CCMD_ENABLE_A20:
            self.outport |= OUT_A20
            self.set_a20(1)
        elif value == CCMD_DISABLE_A20:
            self.outport &= ~OUT_A20
            self.set_a20(0)
        elif value == CCMD_RESET:
            self.request_reset(False)
        # Other commands (0xff included) do nothing.

    def _write_data(self, offset: int, size: int, value: int) -> None:
        self.status &= ~STAT_CMD
        command, self.write_cmd = self.write_cmd, 0
        if command == 0:
            self.keyboard.write(value)
            self.mode &= ~MODE_DISABLE_KBD   # talking to the keyboard re-enables it
            self._refill()
        elif command == CCMD_WRITE_MODE:
            self.mode = value
            self.keyboard.translate = bool(value & MODE_KCC)
            self._update_irq_lines()
            self._refill()
        elif command == CCMD_WRITE_OBUF:
            self._queue_controller(value)
        elif command == CCMD_WRITE_AUX_OBUF:
            self._queue_controller(value, aux=True)
        elif command == CCMD_WRITE_OUTPORT:
            self._write_outport(value)
        elif command == CCMD_WRITE_MOUSE:
            self.mouse.write(value)
            self.mode &= ~MODE_DISABLE_MOUSE
            self._refill()

    def _write_outport(self, value: int) -> None:
        self.outport = value
        self.set_a20((value >> 1) & 1)
        if not value & OUT_RESET:
            self.request_reset(False)

    # --- the outside's side -----------------------------------------------------------

    def send_key(self, keycode: int, down: bool) -> None:
        """A key event from the user (QEMU's key number; see the module comment)."""
        self.keyboard.send_key(keycode, down)

    @property
    def a20(self) -> int:
        return (self.outport >> 1) & 1

    # --- snapshots ----------------------------------------------------------------------

    def save_state(self) -> dict:
        return {"mode": self.mode, "status": self.status, "outport": self.outport,
                "write_cmd": self.write_cmd, "controller_byte": self.controller_byte,
                "controller_aux": self.controller_aux, "source": self.source,
                "obdata": self.obdata, "kbd_pending": self._kbd_pending,
                "mouse_pending": self._mouse_pending, "irq_levels": list(self._irq_levels),
                "keyboard": self.keyboard.save_state(), "mouse": self.mouse.save_state()}

    def load_state(self, state: dict) -> None:
        for name in ("mode", "status", "outport", "write_cmd", "controller_byte",
                     "controller_aux", "source", "obdata"):
            setattr(self, name, state[name])
        self._kbd_pending = state["kbd_pending"]
        self._mouse_pending = state["mouse_pending"]
        self._irq_levels = list(state["irq_levels"])
        self.keyboard.load_state(state["keyboard"])
        self.mouse.load_state(state["mouse"])
