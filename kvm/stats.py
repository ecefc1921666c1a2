"""VM-exit statistics: every exit counted by VMX exit reason with the time the
hypervisor spent handling it (the figures kvm_stat shows), plus I/O exits by port."""

from collections import defaultdict

from kvm import vmx


class ExitStats:
    def __init__(self):
        self.count = defaultdict(int)
        self.time_ns = defaultdict(int)
        self.io_ports = defaultdict(int)

    def record(self, reason: int, elapsed_ns: int):
        self.count[reason] += 1
        self.time_ns[reason] += elapsed_ns

    def as_dict(self):
        """{exit reason name: {"count": n, "time_ns": t}}, by reason number."""
        return {
            vmx.exit_reason_name(reason): {"count": self.count[reason], "time_ns": self.time_ns[reason]}
            for reason in sorted(self.count)
        }

    def merge_into(self, total: "ExitStats"):
        for reason, n in self.count.items():
            total.count[reason] += n
            total.time_ns[reason] += self.time_ns[reason]
        for port, n in self.io_ports.items():
            total.io_ports[port] += n
