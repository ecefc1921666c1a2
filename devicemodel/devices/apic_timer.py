"""The local APIC timer (SDM Vol. 3 "APIC Timer"): one-shot, periodic and TSC-deadline.

The counter runs on the APIC bus clock, 1 GHz here as in QEMU and KVM (one tick per
nanosecond of the device clock), divided by the divide configuration register (DCR bits
0, 1, 3: 0b000 divides by 2 ... 0b110 by 128, 0b111 by 1).

* One-shot: writing the initial count starts the count down from it; reaching 0 signals
  the timer interrupt once. Periodic: at 0 the count reloads from the initial count and
  goes on. An initial count of 0 stops the timer. Masking the LVT entry keeps the count
  going but signals nothing (no deadline is scheduled while masked).
* TSC-deadline: the timer signals once the guest's TSC reaches IA32_TSC_DEADLINE, which
  then reads 0; writing 0 disarms it. The initial and current counts read 0 and writes to
  the initial count are ignored. Entering or leaving this mode disarms the timer (and
  clears the initial count), as in KVM.

The guest's TSC is a linear function of the device clock at the TSC's rate: a deadline
is converted to device-clock time when it is written (on the vCPU's own thread, where
``tsc.now()`` is exact), rounded up so that the interrupt never comes early.
"""

from __future__ import annotations

from typing import Callable, Optional

from devicemodel.clock import DeviceTimer

ONE_SHOT, PERIODIC, TSC_DEADLINE = 0, 1, 2
MODE_NAMES = {ONE_SHOT: "one-shot", PERIODIC: "periodic", TSC_DEADLINE: "tsc-deadline"}
MIN_PERIOD_NS = 100_000          # a periodic timer fires at most every 100 us (KVM limits it too)
MASK32 = 0xFFFFFFFF


def divide_shift(dcr: int) -> int:
    """log2 of the divisor that DCR selects."""
    code = (dcr & 3) | ((dcr >> 1) & 4)
    return (code + 1) & 7


class ApicTimer:
    """``expire()`` is called at each expiry with the LVT entry unmasked (the caller
    delivers the LVT timer interrupt). ``tsc`` offers ``now()`` (the guest's TSC, read
    on the vCPU's thread) and ``khz``; without one the TSC-deadline mode never fires."""

    def __init__(self, clock, expire: Callable[[], None], tsc=None):
        self.clock = clock
        self.expire = expire
        self.tsc = tsc
        self._timer = DeviceTimer(clock, self._expired)
        self.reset()

    def reset(self) -> None:
        self._timer.cancel()
        self.mode = ONE_SHOT
        self.masked = True
        self.initial = 0
        self.dcr = 0
        self.shift = divide_shift(0)
        self.start_ns = 0            # when the count was last loaded with ``initial``
        self.tsc_deadline = 0
        self.deadline_ns: Optional[int] = None   # TSC-deadline mode: when the TSC reaches it

    # ---- registers -------------------------------------------------------------------------

    def set_lvt(self, mode: int, masked: bool) -> None:
        if (mode == TSC_DEADLINE) != (self.mode == TSC_DEADLINE):
            self.initial = 0
            self.tsc_deadline = 0
            self.deadline_ns = None
        self.mode, self.masked = mode, masked
        self._schedule()

    def set_initial_count(self, count: int) -> None:
        if self.mode == TSC_DEADLINE:
            return
        self.initial = count & MASK32
        self.start_ns = self.clock.now_ns()
        self._schedule()

    def set_divide(self, dcr: int) -> None:
        """A new divisor: the count goes on from where it is, at the new rate."""
        now = self.clock.now_ns()
        ticks = self._elapsed_ticks(now)
        self.dcr = dcr & 0xB
        self.shift = divide_shift(self.dcr)
        self.start_ns = now - (ticks << self.shift)
        self._schedule()

    def current_count(self) -> int:
        if self.mode == TSC_DEADLINE or self.initial == 0:
            return 0
        ticks = self._elapsed_ticks(self.clock.now_ns())
        if self.mode == PERIODIC:
            return self.initial - ticks % self.initial
        return max(self.initial - ticks, 0)

    def set_tsc_deadline(self, deadline: int) -> None:
        """WRMSR IA32_TSC_DEADLINE (ignored outside TSC-deadline mode); on the vCPU's thread."""
        if self.mode != TSC_DEADLINE:
            return
        self.tsc_deadline = deadline
        self.deadline_ns = None
        if deadline and self.tsc is not None:
            ahead = max(deadline - self.tsc.now(), 0)
            self.deadline_ns = self.clock.now_ns() + -(-ahead * 1_000_000 // self.tsc.khz)
        self._schedule()

    def read_tsc_deadline(self) -> int:
        return self.tsc_deadline if self.mode == TSC_DEADLINE else 0

    # ---- expiry ------------------------------------------------------------------------------

    def _elapsed_ticks(self, now: int) -> int:
        return max(now - self.start_ns, 0) >> self.shift

    def next_expiry_ns(self) -> Optional[int]:
        """When the timer next signals (its LVT entry unmasked), or None."""
        if self.masked:
            return None
        if self.mode == TSC_DEADLINE:
            return self.deadline_ns
        if self.initial == 0:
            return None
        period = self.initial << self.shift
        if self.mode == PERIODIC:
            step = max(period, MIN_PERIOD_NS)
            elapsed = max(self.clock.now_ns() - self.start_ns, 0)
            return self.start_ns + (elapsed // step + 1) * step
        end = self.start_ns + period
        return end if end > self.clock.now_ns() else None

    def _schedule(self) -> None:
        when = self.next_expiry_ns()
        if when is None:
            self._timer.cancel()
        else:
            self._timer.arm(when)

    def _expired(self) -> None:
        if self.mode == TSC_DEADLINE:
            self.tsc_deadline = 0
            self.deadline_ns = None
        elif self.mode == PERIODIC:
            self._schedule()
        self.expire()

    # ---- state -------------------------------------------------------------------------------

    def save_state(self) -> dict:
        return {"mode": self.mode, "masked": self.masked, "initial": self.initial, "dcr": self.dcr,
                "start_ns": self.start_ns, "tsc_deadline": self.tsc_deadline, "deadline_ns": self.deadline_ns}

    def load_state(self, state: dict) -> None:
        self.mode, self.masked = state["mode"], state["masked"]
        self.initial, self.dcr = state["initial"], state["dcr"]
        self.shift = divide_shift(self.dcr)
        self.start_ns = state["start_ns"]
        self.tsc_deadline, self.deadline_ns = state["tsc_deadline"], state["deadline_ns"]
        self._schedule()


class VcpuTsc:
    """A vCPU's TSC as the timer reads it: KVM_GET_MSRS of IA32_TSC (on the vCPU's own
    thread) and KVM_GET_TSC_KHZ (measured on first use)."""

    IA32_TSC = 0x10

    def __init__(self, vcpu):
        self.vcpu = vcpu

    def now(self) -> int:
        return self.vcpu.get_msrs([self.IA32_TSC])[self.IA32_TSC]

    @property
    def khz(self) -> int:
        return self.vcpu.get_tsc_khz()
