#!/usr/bin/env python3
"""Boot time of Debian's Linux under pyhv against QEMU's TCG.

Boots tools/debian_linux.py's kernel and initramfs to the ready marker that the
initramfs's /init prints (PYHV-LINUX-READY) under pyhv and under
``qemu-system-x86_64 -accel tcg``, with the same command line
(-m 256M -nographic -no-reboot -kernel K -initrd I -append "console=ttyS0 ..."),
by the bzImage boot protocol and by the PVH entry of the uncompressed vmlinux (which
QEMU's -kernel boots too). For each it prints the wall time from start to the marker,
the CPU time (user + system) the emulator's process used by then, their medians and
minimums over the runs, and pyhv/QEMU ratios of both; then the top VM-exit reasons of
pyhv's boot (-d exits-summary, printed when the benchmark stops pyhv with SIGTERM at
the marker).

    python tools/bench_boot.py [--boot bzimage|pvh|both] [--runs N] [--smp N]
                               [--append ARGS] [--no-qemu] [--top N]

The machine's other load disturbs wall time much more than CPU time, and the minimum
of several runs less than their median; compare them all.
"""

from __future__ import annotations

import argparse
import os
import re
import selectors
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import debian_linux  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Boot:
    wall: float                 # seconds from start to the marker
    cpu: float                  # user + system seconds of the process by then
    exits: str = ""             # pyhv's exit summary
    log: str = field(default="", repr=False)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def boot(cmd: list[str], marker: str, timeout: float) -> Boot:
    """Start cmd, wait for `marker` on its stdout; the times, then SIGTERM it and collect
    what it prints on stderr as it ends."""
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=REPO)
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    output = b""
    try:
        while marker.encode() not in output:
            if time.monotonic() - start > timeout:
                raise SystemExit(f"no {marker} after {timeout} s from {' '.join(cmd)}:\n"
                                 f"{output[-3000:].decode(errors='replace')}")
            if selector.select(0.5):
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    raise SystemExit(f"{' '.join(cmd)} ended before {marker} "
                                     f"(status {proc.wait()}):\n{output[-3000:].decode(errors='replace')}"
                                     f"\n{proc.stderr.read().decode(errors='replace')}")
                output += chunk
        wall = time.monotonic() - start
        cpu = cpu_seconds(proc.pid)
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return Boot(wall, cpu, err.decode(errors="replace"), output.decode(errors="replace"))


def exit_table(stderr: str, top: int) -> str:
    """The first `top` rows of each vCPU's table in pyhv's exit summary, and its total."""
    out = []
    for block in re.split(r"\n(?=VM exits of vCPU)", stderr[stderr.find("VM exits of vCPU"):]):
        lines = block.strip().splitlines()
        if len(lines) < 2:
            continue
        rows = [line for line in lines[2:] if not line.strip().startswith("total")]
        totals = [line for line in lines[2:] if line.strip().startswith("total")]
        out += lines[:2] + rows[:top] + totals
    return "\n".join(out)


def commands(kernel: Path, initrd: Path, append: str, smp: int, qemu: str | None):
    common = ["-m", "256M", "-nographic", "-no-reboot", "-kernel", str(kernel), "-initrd", str(initrd),
              "-append", append, "-smp", str(smp)]
    pyhv = [sys.executable, "-m", "devicemodel", *common, "-d", "exits-summary"]
    return pyhv, ([qemu, "-accel", "tcg", *common] if qemu else None)


def summary(boots: list[Boot]) -> tuple[float, float, float, float]:
    """Median wall, minimum wall, median CPU, minimum CPU."""
    walls, cpus = [b.wall for b in boots], [b.cpu for b in boots]
    return statistics.median(walls), min(walls), statistics.median(cpus), min(cpus)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--boot", choices=("bzimage", "pvh", "both"), default="both",
                    help="boot method: the bzImage protocol, the vmlinux's PVH entry, or both (default)")
    ap.add_argument("--runs", type=int, default=1, help="boots per emulator and method (medians reported)")
    ap.add_argument("--smp", type=int, default=1, help="vCPUs (default 1)")
    ap.add_argument("--append", default="", help="more kernel command-line arguments after console=ttyS0")
    ap.add_argument("--no-qemu", action="store_true", help="boot under pyhv only")
    ap.add_argument("--top", type=int, default=8, help="exit reasons shown (default 8)")
    ap.add_argument("--timeout", type=float, default=900, help="seconds to wait for the marker")
    args = ap.parse_args()

    qemu = None if args.no_qemu else shutil.which("qemu-system-x86_64")
    if not args.no_qemu and not qemu:
        sys.exit("qemu-system-x86_64 not found (apt-get install qemu-system-x86), or pass --no-qemu")
    try:
        linux = debian_linux.debian_linux()
    except debian_linux.ToolError as e:
        sys.exit(str(e))
    append = " ".join(["console=ttyS0", args.append]).strip()
    methods = {"bzimage": [("bzImage", linux.kernel)], "pvh": [("PVH", linux.vmlinux)],
               "both": [("bzImage", linux.kernel), ("PVH", linux.vmlinux)]}[args.boot]
    marker = debian_linux.READY_MARKER

    print(f"Linux {linux.kernel_release}, -smp {args.smp}, -append {append!r}, {args.runs} run(s) each; "
          f"seconds to {marker}")
    print(f"{'boot':<8} {'emulator':<10} {'wall':>8} {'min':>8} {'cpu':>8} {'min':>8}   runs (wall/cpu)")
    tables = []
    for label, kernel in methods:
        pyhv_cmd, qemu_cmd = commands(kernel, linux.initrd, append, args.smp, qemu)
        emulators = [(name, cmd) for name, cmd in (("pyhv", pyhv_cmd), ("QEMU TCG", qemu_cmd)) if cmd]
        results = {name: [] for name, _ in emulators}
        for _ in range(args.runs):   # alternately, so that both see the same load
            for name, cmd in emulators:
                results[name].append(boot(cmd, marker, args.timeout))
        for name, boots in results.items():
            figures = " ".join(f"{x:>8.2f}" for x in summary(boots))
            runs = " ".join(f"{b.wall:.2f}/{b.cpu:.2f}" for b in boots)
            print(f"{label:<8} {name:<10} {figures}   {runs}", flush=True)
        if "QEMU TCG" in results:
            ratios = [p / q for p, q in zip(summary(results["pyhv"]), summary(results["QEMU TCG"]))]
            print(f"{label:<8} {'pyhv/QEMU':<10} " + " ".join(f"{r:>7.2f}x" for r in ratios), flush=True)
        tables.append((label, exit_table(results["pyhv"][-1].exits, args.top)))
    for label, table in tables:
        print(f"\npyhv, {label} (last run):\n{table}")


if __name__ == "__main__":
    main()
