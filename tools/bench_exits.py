"""Exit round-trip cost: a guest loops on an instruction that VM-exits, and the time per
exit is measured for three kinds of exit:

* CPUID, which kvm/'s compiled half handles (the guest re-enters without returning to
  Python);
* OUT to a port served by a trivial device on the device model's PIO address space
  (every exit returns from VCPU.run() to this benchmark's run loop);
* an MMIO read served by a trivial device on the MMIO address space (the EPT violation,
  the root-mode emulation of the load, and the KVM_EXIT_MMIO round trip).

Usage: python3 tools/bench_exits.py [--exits N]
"""

import argparse
import mmap
import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devicemodel.address_space import AddressSpace, Region  # noqa: E402
from devicemodel.entry_state import set_protected_mode_entry  # noqa: E402
from kvm import Kvm  # noqa: E402
from kvm.constants import KVM_EXIT_HLT, KVM_EXIT_IO, KVM_EXIT_MMIO  # noqa: E402

CODE_GPA = 0x1000
RAM_SIZE = 1 << 20
PORT = 0x80
MMIO_GPA = 0xFED00000


def mov_esi(n):
    return b"\xbe" + struct.pack("<I", n)             # mov esi, n


# Each loop: the exiting instruction, dec esi, jnz back to it, then hlt (32-bit code).
LOOPS = {
    "CPUID (handled in kvm/)": lambda n: mov_esi(n) + b"\x31\xc0\x0f\xa2\x4e\x75\xf9\xf4",
    "OUT to a device (PIO address space)": lambda n: mov_esi(n) + b"\xe6\x80\x4e\x75\xfb\xf4",
    "MMIO read from a device (MMIO address space)":
        lambda n: mov_esi(n) + b"\xa1" + struct.pack("<I", MMIO_GPA) + b"\x4e\x75\xf8\xf4",
}


def measure(code: bytes) -> float:
    """CPU seconds to run `code` to its HLT (other load on the machine disturbs CPU time
    far less than wall time)."""
    vm = Kvm().create_vm()
    ram = mmap.mmap(-1, RAM_SIZE)
    ram[CODE_GPA:CODE_GPA + len(code)] = code
    vm.set_user_memory_region(0, 0, RAM_SIZE, ram)
    vcpu = vm.create_vcpu(0)
    set_protected_mode_entry(vcpu, CODE_GPA, 0, 0)
    pio, mmio = AddressSpace("io", 0x10000), AddressSpace("memory")
    writes = []
    pio.add_region(Region(PORT, 1, "sink", read=lambda o, s: 0, write=lambda o, s, v: writes.append(v)))
    mmio.add_region(Region(MMIO_GPA, 0x1000, "counter", read=lambda o, s: 0x12345678, sizes=(1, 2, 4, 8)))
    start = time.process_time()
    while True:
        run = vcpu.run()
        if run.exit_reason == KVM_EXIT_HLT:
            break
        if run.exit_reason == KVM_EXIT_IO:
            io = run.io
            pio.write(io.port, io.size, int.from_bytes(io.data[:io.size], "little"))
        elif run.exit_reason == KVM_EXIT_MMIO:
            m = run.mmio
            m.data[:m.len] = mmio.read(m.phys_addr, m.len).to_bytes(m.len, "little")
        else:
            raise SystemExit(f"unexpected exit {run.exit_reason}")
    return time.process_time() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--exits", type=int, default=200_000, help="exits per measurement")
    args = parser.parse_args()
    print(f"{'exit':48} {'exits':>8} {'ns/exit':>9}")
    for name, loop in LOOPS.items():
        elapsed = measure(loop(args.exits))
        print(f"{name:48} {args.exits:>8} {elapsed / args.exits * 1e9:>9.0f}")


if __name__ == "__main__":
    main()
