"""The 8254 programmable interval timer of the PC, after the Intel 82C54 datasheet, with
QEMU's ports and reset state (hw/timer/i8254.c), and port 0x61 (QEMU's hw/audio/pcspk.c).

Ports 0x40..0x42 are the counters' data ports, 0x43 the control word register (write
only; reads return 0). Three counters clocked at 1.193182 MHz:

* counter 0's OUT drives ISA IRQ 0 (``irq(level)`` on every change);
* counter 1 is the DRAM refresh counter, with nothing attached;
* counter 2's GATE is port 0x61 bit 0 and its OUT reads back as port 0x61 bit 5 (the
  PC speaker; Linux calibrates the TSC with it).

The counters are computed, not ticked: the clock's time gives the number of CLK edges
since the clock's zero (edge ``k`` falls at ``ceil(k * 1e9 / 1193182)`` ns), and each
counter keeps the edge at which its counting element (CE) was loaded. Reads derive CE
and OUT from that; counter 0 arms a timer for its next OUT transition only.

Modes, per the datasheet (N the initial count; 0 means 65536, or 10000 in BCD):

0  interrupt on terminal count: OUT low; CE loaded on the CLK after the count is
   written, OUT high when CE reaches 0 (N + 1 CLKs after the write). GATE low pauses.
1  retriggerable one-shot: a GATE rising edge loads CE on the next CLK and puts OUT
   low for N CLKs.
2  rate generator: OUT low for one CLK when CE reaches 1, then CE reloads: period N.
   GATE low stops counting and forces OUT high; GATE rising reloads.
3  square wave: OUT high for ceil(N/2) CLKs and low for floor(N/2), CE counting by
   two; GATE as in mode 2. A new count written while counting takes effect at the end
   of the current period (mode 2) or half-period (mode 3).
4  software-triggered strobe: OUT low for one CLK when CE reaches 0, N + 1 CLKs after
   the count is written. GATE low pauses.
5  hardware-triggered strobe: as mode 4, started by a GATE rising edge.

Reads: the counter latch command and the read-back command (status byte: OUT, NULL
COUNT, access mode, mode, BCD; and/or the count) latch values until read; otherwise a
read returns the live CE, lobyte/hibyte as programmed.
"""

from __future__ import annotations

from typing import Callable, Optional

from devicemodel.address_space import Region
from devicemodel.clock import NS_PER_SEC, DeviceTimer

PIT_FREQ = 1_193_182

ACCESS_LATCH, ACCESS_LSB, ACCESS_MSB, ACCESS_WORD = 0, 1, 2, 3
CONTROL_PORT = 3
READ_BACK = 3            # the select bits 7:6 of a read-back command
READ_BACK_NO_COUNT = 0x20
READ_BACK_NO_STATUS = 0x10
STATUS_OUT = 0x80
STATUS_NULL_COUNT = 0x40


def edges_at(ns: int) -> int:
    """How many CLK edges have occurred by time ``ns``."""
    return ns * PIT_FREQ // NS_PER_SEC


def edge_time(edge: int) -> int:
    """When CLK edge ``edge`` occurs (the first ns with ``edges_at(ns) == edge``)."""
    return -(-edge * NS_PER_SEC // PIT_FREQ)


def _from_bcd(value: int) -> int:
    return sum(((value >> (4 * i)) & 0xF) * 10 ** i for i in range(4))


def _to_bcd(value: int) -> int:
    return sum((value // 10 ** i % 10) << (4 * i) for i in range(4))


def _no_output(level: int) -> None:
    pass


_STATE_FIELDS = ("mode_bits", "access", "bcd", "gate", "cr", "cr_valid", "write_msb_next",
                 "write_lsb", "read_msb_next", "latched_bytes", "status_latched",
                 "armed", "n", "load_edge", "offset", "base", "run_start", "ce_frozen",
                 "out_frozen", "next_n", "switch_edge", "switch_offset", "null_count",
                 "transfer_edge")


class Counter:
    """One counter. Time comes in as the current CLK edge index ``k``."""

    def __init__(self, gate: int):
        self.mode_bits = 3
        self.access = ACCESS_WORD
        self.bcd = False
        self.gate = gate
        self.cr = 0                 # the count register as written (0 = maximum)
        self.cr_valid = False       # a complete count has been written since the control word
        self.write_msb_next = False
        self.write_lsb = 0
        self.read_msb_next = False
        self.latched_bytes: list[int] = []   # output latch bytes still to read
        self.status_latched: Optional[int] = None
        # The counting sequence: CE = n at edge load_edge (elapsed 0), counting on CLK
        # edges after run_start while it is not None; base = elapsed edges before run_start.
        self.armed = False
        self.n = 0x10000
        self.load_edge = 0
        self.offset = 0             # mode 3: the phase the sequence starts in
        self.base = 0
        self.run_start: Optional[int] = None
        self.ce_frozen = 0          # CE when no sequence is loaded
        self.out_frozen = 1         # OUT when no sequence is loaded
        self.next_n: Optional[int] = None    # modes 2/3: count written while counting ...
        self.switch_edge = 0                 # ... takes over at this edge
        self.switch_offset = 0
        self.null_count = True      # CR not yet transferred to CE ...
        self.transfer_edge: Optional[int] = None  # ... until this edge (None: a trigger)

    @property
    def mode(self) -> int:
        return self.mode_bits - 4 if self.mode_bits >= 6 else self.mode_bits  # x10, x11

    @property
    def modulus(self) -> int:
        return 10000 if self.bcd else 0x10000

    def _initial_count(self) -> int:
        value = _from_bcd(self.cr) if self.bcd else self.cr
        return value or self.modulus

    # --- the sequence as a function of time -----------------------------------

    def normalize(self, k: int) -> None:
        """Apply what has happened by edge ``k``: a pending count's takeover, CR transfer."""
        if self.next_n is not None and k >= self.switch_edge:
            self.n = self.next_n
            self.load_edge = self.run_start = self.switch_edge
            self.base = 0
            self.offset = self.switch_offset
            self.next_n = None
        if self.null_count and self.transfer_edge is not None and k >= self.transfer_edge:
            self.null_count = False

    def _elapsed(self, k: int) -> int:
        if self.run_start is None or k <= self.run_start:
            return self.base
        return self.base + k - self.run_start

    def _loaded(self, k: int) -> bool:
        return self.armed and k >= self.load_edge

    def _phase(self, e: int) -> int:
        return (e + self.offset) % self.n

    def ce(self, k: int) -> int:
        """The counting element at edge ``k`` (in the counting domain: 1..n or wrapped)."""
        if not self._loaded(k):
            return self.ce_frozen
        e = self._elapsed(k)
        mode, n = self.mode, self.n
        if mode == 2:
            return n - e % n
        if mode == 3:
            p = self._phase(e)
            half = (n + 1) // 2
            start = n - (n & 1)      # odd counts load N - 1
            return start - 2 * (p if p < half else p - half)
        return (n - e) % self.modulus

    def out(self, k: int) -> int:
        """The OUT pin at edge ``k``."""
        if not self._loaded(k):
            return self.out_frozen
        mode, n = self.mode, self.n
        if mode in (2, 3) and self.run_start is None:
            return 1                 # GATE low forces OUT high
        e = self._elapsed(k)
        if mode in (0, 1):
            return 1 if e >= n else 0
        if mode == 2:
            return 0 if e % n == n - 1 else 1
        if mode == 3:
            return 1 if self._phase(e) < (n + 1) // 2 else 0
        return 0 if e == n else 1    # modes 4, 5

    def next_transition(self, k: int) -> Optional[int]:
        """The first edge after ``k`` at which OUT changes, or None."""
        if not self.armed:
            return None
        if k < self.load_edge:
            if self.out(self.load_edge) != self.out_frozen:
                return self.load_edge
            k = self.load_edge
        if self.run_start is None:
            return None
        k = max(k, self.run_start)
        e = self._elapsed(k)
        mode, n = self.mode, self.n
        if mode in (0, 1):
            later = n if e < n else None
        elif mode == 2:
            p = e % n
            later = None if n == 1 else e + (n - 1 - p if p < n - 1 else 1)
        elif mode == 3:
            p = self._phase(e)
            half = (n + 1) // 2
            later = None if n == 1 else e + (half - p if p < half else n - p)
        else:
            later = n if e < n else n + 1 if e == n else None
        edge = None if later is None else k + later - e
        if self.next_n is not None and (edge is None or self.switch_edge < edge):
            edge = self.switch_edge  # a new count takes over there
        return edge

    # --- what the guest and the gate do -----------------------------------------

    def _start(self, k: int, n: int, out_before: int, running: bool) -> None:
        """A new sequence: CE gets ``n`` on the next CLK edge."""
        self.ce_frozen = self.ce(k)
        self.out_frozen = out_before
        self.armed = True
        self.n = n
        self.load_edge = k + 1
        self.offset = 0
        self.base = 0
        self.run_start = self.load_edge if running else None
        self.next_n = None
        self.null_count = True
        self.transfer_edge = self.load_edge

    def _stop(self, k: int) -> None:
        self.ce_frozen = self.ce(k)
        self.out_frozen = self.out(k)
        self.armed = False
        self.next_n = None

    def write_control(self, k: int, value: int) -> None:
        access = (value >> 4) & 3
        if access == ACCESS_LATCH:
            self.latch_count(k)
            return
        self._stop(k)
        self.access = access
        self.mode_bits = (value >> 1) & 7
        self.bcd = bool(value & 1)
        self.out_frozen = 0 if self.mode == 0 else 1
        self.cr_valid = False
        self.null_count = True
        self.transfer_edge = None
        self.write_msb_next = False
        self.read_msb_next = False

    def write_count_byte(self, k: int, value: int) -> None:
        if self.access == ACCESS_LSB:
            self._write_count(k, value)
        elif self.access == ACCESS_MSB:
            self._write_count(k, value << 8)
        elif not self.write_msb_next:
            self.write_lsb = value
            self.write_msb_next = True
            if self.mode == 0:
                self._stop(k)        # the first byte disables counting, OUT low at once
                self.out_frozen = 0
        else:
            self.write_msb_next = False
            self._write_count(k, self.write_lsb | (value << 8))

    def _write_count(self, k: int, value: int) -> None:
        self.cr = value
        self.cr_valid = True
        n = self._initial_count()
        mode = self.mode
        if mode in (1, 5):
            self.null_count = True   # transferred by the next trigger
            self.transfer_edge = None
        elif mode in (2, 3) and self._loaded(k):
            if self.run_start is None:
                self.null_count = True   # stopped by GATE: the trigger will load it
                self.transfer_edge = None
            else:
                self._switch_at_boundary(k, n)
        elif mode in (2, 3) and self.armed:
            self.n = n               # written again before the first load
        else:
            self._start(k, n, out_before=0 if mode == 0 else 1, running=bool(self.gate))

    def _switch_at_boundary(self, k: int, n: int) -> None:
        e = self._elapsed(k)
        if self.mode == 2:
            later, offset = self.n - e % self.n, 0
        else:
            p = self._phase(e)
            half = (self.n + 1) // 2
            if p < half:
                later, offset = half - p, (n + 1) // 2  # the new count starts low
            else:
                later, offset = self.n - p, 0
        self.next_n = n
        self.switch_edge = k + later
        self.switch_offset = offset
        self.null_count = True
        self.transfer_edge = self.switch_edge

    def set_gate(self, k: int, level: int) -> None:
        rising = level and not self.gate
        falling = self.gate and not level
        self.gate = level
        mode = self.mode
        if mode in (0, 4):
            if not self.armed:
                return
            if falling:
                self.base = self._elapsed(k)
                self.run_start = None
            elif rising:
                self.run_start = max(k, self.load_edge)
        elif mode in (2, 3):
            if falling and self.armed:
                self.base = self._elapsed(k)
                self.run_start = None
                self.next_n = None
            elif rising and self.cr_valid:
                self._start(k, self._initial_count(), out_before=1, running=True)
        elif rising and self.cr_valid:  # modes 1, 5: the trigger
            self._start(k, self._initial_count(), out_before=self.out(k), running=True)

    # --- reads ----------------------------------------------------------------------

    def readout(self, k: int) -> int:
        """CE as the guest reads it: 16-bit binary or 4-digit BCD."""
        value = self.ce(k) % self.modulus
        return _to_bcd(value) if self.bcd else value

    def _count_bytes(self, value: int) -> list[int]:
        if self.access == ACCESS_LSB:
            return [value & 0xFF]
        if self.access == ACCESS_MSB:
            return [value >> 8]
        return [value & 0xFF, value >> 8]

    def latch_count(self, k: int) -> None:
        if not self.latched_bytes:   # a second latch before the read is ignored
            self.latched_bytes = self._count_bytes(self.readout(k))

    def latch_status(self, k: int) -> None:
        if self.status_latched is None:
            self.status_latched = ((self.out(k) << 7)
                                   | (STATUS_NULL_COUNT if self.null_count else 0)
                                   | (self.access << 4) | (self.mode_bits << 1) | int(self.bcd))

    def read_byte(self, k: int) -> int:
        if self.status_latched is not None:
            value, self.status_latched = self.status_latched, None
            return value
        if self.latched_bytes:
            return self.latched_bytes.pop(0)
        value = self.readout(k)
        if self.access == ACCESS_LSB:
            return value & 0xFF
        if self.access == ACCESS_MSB:
            return value >> 8
        msb, self.read_msb_next = self.read_msb_next, not self.read_msb_next
        return value >> 8 if msb else value & 0xFF

    def reset(self, k: int) -> None:
        """QEMU's reset state: mode 3, count 65536, loaded now (counting if GATE is high)."""
        self.write_control(k, 0x36)
        self.cr, self.cr_valid = 0, True
        self._start(k - 1, self.modulus, out_before=1, running=bool(self.gate))
        self.null_count = False

    def save_state(self) -> dict:
        state = {name: getattr(self, name) for name in _STATE_FIELDS}
        state["latched_bytes"] = list(self.latched_bytes)
        return state

    def load_state(self, state: dict) -> None:
        for name in _STATE_FIELDS:
            setattr(self, name, state[name])
        self.latched_bytes = list(state["latched_bytes"])


class I8254:
    """The PIT at ``iobase``; counter 0's OUT drives ``irq(level)`` (ISA IRQ 0)."""

    def __init__(self, clock, irq: Callable[[int], None] = _no_output, iobase: int = 0x40,
                 name: str = "pit"):
        self.clock = clock
        self.irq = irq
        self.iobase = iobase
        self.name = name
        self.region = Region(base=iobase, size=4, name=name, read=self.read, write=self.write,
                             owner=self, sizes=(1, 2, 4), impl_size=1)
        self.regions = (self.region,)
        self.counters = [Counter(gate=1), Counter(gate=1), Counter(gate=0)]
        self._timer = DeviceTimer(clock, self._on_timer)
        self._irq_level = 0
        self.reset()

    def _edge(self) -> int:
        k = edges_at(self.clock.now_ns())
        for counter in self.counters:
            counter.normalize(k)
        return k

    def reset(self) -> None:
        k = self._edge()
        for counter in self.counters:
            counter.reset(k)
        self._update_irq(k)

    # --- the guest's side -------------------------------------------------------------

    def read(self, offset: int, size: int) -> int:
        if offset == CONTROL_PORT:
            return 0                 # the control word register is write-only
        return self.counters[offset].read_byte(self._edge())

    def write(self, offset: int, size: int, value: int) -> None:
        k = self._edge()
        if offset != CONTROL_PORT:
            self.counters[offset].write_count_byte(k, value)
        elif value >> 6 == READ_BACK:
            for index, counter in enumerate(self.counters):
                if value & (2 << index):
                    if not value & READ_BACK_NO_STATUS:
                        counter.latch_status(k)
                    if not value & READ_BACK_NO_COUNT:
                        counter.latch_count(k)
        else:
            self.counters[value >> 6].write_control(k, value)
        if offset in (0, CONTROL_PORT):
            self._update_irq(k)

    # --- gates and outputs ------------------------------------------------------------

    def set_gate(self, index: int, level: int) -> None:
        k = self._edge()
        self.counters[index].set_gate(k, 1 if level else 0)
        if index == 0:
            self._update_irq(k)

    def get_gate(self, index: int) -> int:
        return self.counters[index].gate

    def get_out(self, index: int) -> int:
        return self.counters[index].out(self._edge())

    def _update_irq(self, k: int) -> None:
        counter = self.counters[0]
        level = counter.out(k)
        if level != self._irq_level:
            self._irq_level = level
            self.irq(level)
        edge = counter.next_transition(k)
        if edge is None:
            self._timer.cancel()
        elif self._timer.deadline_ns != edge_time(edge):
            self._timer.arm(edge_time(edge))

    def _on_timer(self) -> None:
        k = self._edge()
        if self.counters[0].out(k) == self._irq_level:
            # The timer was set for an output change, yet OUT is back at the level it had:
            # the host ran the timer later than a short pulse lasted (mode 2's one-clock low
            # output, say).  The pulse still reaches the interrupt controller.
            self.irq(1 - self._irq_level)
            self.irq(self._irq_level)
        self._update_irq(k)

    # --- snapshots ----------------------------------------------------------------------

    def save_state(self) -> dict:
        return {"counters": [c.save_state() for c in self.counters], "irq_level": self._irq_level}

    def load_state(self, state: dict) -> None:
        for counter, saved in zip(self.counters, state["counters"]):
            counter.load_state(saved)
        self._irq_level = state["irq_level"]
        self._update_irq(self._edge())


class PortB:
    """System control port B at 0x61, as QEMU's pcspk: counter 2's GATE and OUT.

    Bit 0 is counter 2's GATE, bit 1 the speaker data enable; reads add bit 4, the
    refresh request toggle (it flips on every read), and bit 5, counter 2's OUT.
    """

    def __init__(self, pit: I8254, iobase: int = 0x61, name: str = "port61"):
        self.pit = pit
        self.region = Region(base=iobase, size=1, name=name, read=self.read, write=self.write,
                             owner=self, sizes=(1, 2, 4), impl_size=1)
        self.regions = (self.region,)
        self.speaker_data = 0
        self._refresh = 0

    def read(self, offset: int, size: int) -> int:
        self._refresh ^= 0x10
        return (self.pit.get_gate(2) | (self.speaker_data << 1) | self._refresh
                | (self.pit.get_out(2) << 5))

    def write(self, offset: int, size: int, value: int) -> None:
        self.speaker_data = (value >> 1) & 1
        self.pit.set_gate(2, value & 1)

    def save_state(self) -> dict:
        return {"speaker_data": self.speaker_data, "refresh": self._refresh}

    def load_state(self, state: dict) -> None:
        self.speaker_data = state["speaker_data"]
        self._refresh = state["refresh"]
