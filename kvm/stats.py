"""VM-exit statistics: every exit counted by VMX exit reason with the time the
hypervisor spent handling it (the figures kvm_stat shows), plus I/O exits by port.

The counters live in kvm/'s compiled half (struct kvm_exit_stats), which counts the
exits it handles without returning to Python; the Python handlers add theirs."""

from collections import defaultdict

from kvm import vmx
from kvm._silicon import ffi

_FAILED_SLOT = 128      # struct kvm_exit_stats: + 128 for a failed VM entry
_SLOTS = 256


def _slot(reason: int) -> int:
    failed = _FAILED_SLOT if reason & vmx.EXIT_REASON_FAILED_VMENTRY else 0
    return (reason & 0x7F) + failed


def _reason(slot: int) -> int:
    return (slot & 0x7F) | (vmx.EXIT_REASON_FAILED_VMENTRY if slot & _FAILED_SLOT else 0)


class ExitStats:
    def __init__(self, counters=None):
        """counters: a vCPU's struct kvm_exit_stats (default: a zeroed one of its own)."""
        self._c = counters if counters is not None else ffi.new("struct kvm_exit_stats *")
        self.io_ports = defaultdict(int)

    def record(self, reason: int, elapsed_ns: int):
        slot = _slot(reason)
        self._c.count[slot] += 1
        self._c.time_ns[slot] += elapsed_ns

    @property
    def count(self) -> dict:
        """{exit reason: exits}"""
        return {_reason(s): n for s in range(_SLOTS) if (n := self._c.count[s])}

    @property
    def time_ns(self) -> dict:
        """{exit reason: nanoseconds spent handling them}"""
        return {_reason(s): self._c.time_ns[s] for s in range(_SLOTS) if self._c.count[s]}

    def as_dict(self):
        """{exit reason name: {"count": n, "time_ns": t}}, by reason number."""
        count, time_ns = self.count, self.time_ns
        return {
            vmx.exit_reason_name(reason): {"count": count[reason], "time_ns": time_ns[reason]}
            for reason in sorted(count)
        }

    def merge_into(self, total: "ExitStats"):
        for s in range(_SLOTS):
            total._c.count[s] += self._c.count[s]
            total._c.time_ns[s] += self._c.time_ns[s]
        for port, n in self.io_ports.items():
            total.io_ports[port] += n
