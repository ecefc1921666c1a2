#!/usr/bin/env python3
"""Guest MIPS of pyhv's processor against QEMU's TCG on the same CPU-bound guest.

Runs firmware's bench32 (32-bit, paging on) and bench64 (long mode, 4-level paging)
kernels -- a sieve and a CRC-32, `iterations` rounds -- on pyhv (EPT on) and on
qemu-system-x86_64 -accel tcg.  Each is run twice, with a small and a large round count,
and the difference of the two runs' CPU time is measured, so that start-up costs
cancel out.
pyhv counts the instructions its processor retired; both emulators execute the same
guest instructions, so QEMU's rate uses the same count.

    python tools/bench_mips.py [--iterations N] [--no-qemu]
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEBUG_EXIT = ["-device", "isa-debug-exit,iobase=0xf4,iosize=4"]
VARIANTS = [("32-bit, paging", "bench32.elf"), ("64-bit, 4-level paging", "bench64.bin")]


def build_firmware(out: Path):
    subprocess.run(["make", "-s", "-C", str(REPO / "firmware"), f"OUT={out}"], check=True)


def timed(cmd):
    """Run cmd; the CPU time it used (user + system), which other load on the machine
    disturbs far less than wall time."""
    before = os.times()
    r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    after = os.times()
    elapsed = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    if r.returncode != 1:   # isa-debug-exit with 0 -> status 1
        sys.exit(f"{' '.join(cmd)} failed with status {r.returncode}:\n{r.stdout}\n{r.stderr}")
    return elapsed, r


def run_pyhv(kernel: Path, iterations: int):
    cmd = [sys.executable, "-m", "devicemodel", "-kernel", str(kernel), "-nographic",
           "-append", f"iterations={iterations}", "-d", "exits-summary", *DEBUG_EXIT]
    elapsed, r = timed(cmd)
    m = re.search(r"(\d+) guest instructions", r.stderr)
    if not m:
        sys.exit(f"no instruction count in pyhv's output:\n{r.stderr}")
    return elapsed, int(m.group(1)), r.stdout.strip().splitlines()[-1]


def run_qemu(qemu: str, kernel: Path, iterations: int):
    cmd = [qemu, "-accel", "tcg", "-nographic", "-no-reboot", "-m", "128M", "-kernel", str(kernel),
           "-append", f"iterations={iterations}", *DEBUG_EXIT]
    elapsed, r = timed(cmd)
    return elapsed, r.stdout.replace("\r", "").strip().splitlines()[-1].split("..")[-1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=2000, help="rounds of the large run (default 2000)")
    ap.add_argument("--no-qemu", action="store_true", help="measure pyhv only")
    args = ap.parse_args()
    small, large = max(1, args.iterations // 10), args.iterations
    qemu = None if args.no_qemu else shutil.which("qemu-system-x86_64")
    if not args.no_qemu and not qemu:
        sys.exit("qemu-system-x86_64 not found (apt-get install qemu-system-x86), or pass --no-qemu")

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        build_firmware(out)
        print(f"{'workload':<24} {'instructions':>14} {'pyhv MIPS':>10} {'QEMU MIPS':>10} {'pyhv/QEMU':>10}")
        for label, name in VARIANTS:
            kernel = out / name
            t1, n1, line1 = run_pyhv(kernel, small)
            t2, n2, line2 = run_pyhv(kernel, large)
            instructions = n2 - n1
            pyhv_mips = instructions / (t2 - t1) / 1e6
            row = f"{label:<24} {instructions:>14,} {pyhv_mips:>10.1f}"
            if qemu:
                q1, qline1 = run_qemu(qemu, kernel, small)
                q2, qline2 = run_qemu(qemu, kernel, large)
                if (qline1, qline2) != (line1, line2):
                    sys.exit(f"results differ: pyhv {line1!r}/{line2!r}, QEMU {qline1!r}/{qline2!r}")
                qemu_mips = instructions / (q2 - q1) / 1e6
                row += f" {qemu_mips:>10.1f} {pyhv_mips / qemu_mips:>10.3f}"
            print(row, flush=True)


if __name__ == "__main__":
    main()
