#!/usr/bin/env python3
"""Sequential virtio-blk throughput from inside a guest, under pyhv and under QEMU's TCG.

Boots Debian's Linux (tools/debian_linux.py, with the virtio_pci and virtio_blk modules
in the initramfs) with the same command line under both, the disk a raw image of
random data on ``-device virtio-blk-pci,disable-legacy=on``, and in the guest runs
busybox's dd: a sequential read of the whole disk, then a sequential write of it
(``conv=fsync``, so the data reaches the image), each timed by the guest's uptime clock
(kvmclock, 10 ms resolution). It prints MB/s and the pyhv/QEMU ratios.

    python tools/bench_blk.py [--size-mib N] [--bs 1M|64k|...] [--cache writeback|none|...]
                              [--no-qemu]
"""

from __future__ import annotations

import argparse
import os
import re
import selectors
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import debian_linux  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
MODULES = ("virtio_pci", "virtio_blk")
PROMPT = "/ # "
ELAPSED = re.compile(r"ELAPSED ([\d.]+) ([\d.]+)\n")


class Guest:
    """An emulator with the guest's serial console on a pipe."""

    def __init__(self, cmd: list[str]):
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, cwd=REPO)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.proc.stdout, selectors.EVENT_READ)
        self.output = ""

    def _read_until(self, found, timeout: float, what: str):
        """Read the console until found(output) is not None; that value."""
        deadline = time.monotonic() + timeout
        while (result := found(self.output)) is None:
            if time.monotonic() > deadline:
                raise SystemExit(f"no {what} after {timeout} s:\n{self.output[-3000:]}")
            if self.selector.select(0.5):
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                if not chunk:
                    raise SystemExit(f"the emulator ended before {what}:\n{self.output[-3000:]}")
                self.output += chunk.decode(errors="replace").replace("\r", "")
        return result

    def read_until(self, text: str, timeout: float) -> None:
        self._read_until(lambda out: out.index(text) if text in out else None, timeout, repr(text))
        self.output = self.output.split(text, 1)[1]

    def timed(self, command: str, timeout: float) -> float:
        """Seconds that `command` took by the guest's uptime clock (busybox's dd prints no
        rate). The typed line is longer than the terminal, so its echo is not waited for:
        the result line is."""
        self.proc.stdin.write((f"a=$(cut -d' ' -f1 /proc/uptime); {command} >/dev/null 2>&1; "
                               f"echo ELAPSED $a $(cut -d' ' -f1 /proc/uptime)\n").encode())
        self.proc.stdin.flush()
        match = self._read_until(ELAPSED.search, timeout, "timing")
        self.output = self.output[match.end():]
        self.read_until(PROMPT, timeout)
        return max(float(match.group(2)) - float(match.group(1)), 0.01)

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def measure(cmd: list[str], size_mib: int, bs: str, timeout: float) -> tuple[float, float]:
    guest = Guest(cmd)
    try:
        guest.read_until(debian_linux.READY_MARKER, timeout)
        guest.read_until(PROMPT, timeout)
        count = size_mib * 1024 * 1024 // parse_size(bs)
        nbytes = count * parse_size(bs)
        read = guest.timed(f"dd if=/dev/vda of=/dev/null bs={bs} count={count}", timeout)
        write = guest.timed(f"dd if=/dev/zero of=/dev/vda bs={bs} count={count} conv=fsync", timeout)
        return nbytes / read / 1e6, nbytes / write / 1e6
    finally:
        guest.close()


def parse_size(text: str) -> int:
    units = {"": 1, "k": 1024, "K": 1024, "M": 1024 * 1024}
    match = re.fullmatch(r"(\d+)([kKM]?)", text)
    if match is None:
        raise SystemExit(f"bad block size {text!r} (e.g. 4096, 64k, 1M)")
    return int(match.group(1)) * units[match.group(2)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=64, help="disk size, read and written whole (default 64)")
    ap.add_argument("--bs", default="1M", help="dd's block size (default 1M)")
    ap.add_argument("--cache", default="writeback", help="-drive cache= mode (default writeback)")
    ap.add_argument("--no-qemu", action="store_true", help="measure pyhv only")
    ap.add_argument("--timeout", type=float, default=900, help="seconds for the boot and each dd")
    args = ap.parse_args()
    if args.size_mib <= 0 or parse_size(args.bs) > args.size_mib * 1024 * 1024:
        sys.exit("--size-mib must be positive and at least one block")

    qemu = None if args.no_qemu else shutil.which("qemu-system-x86_64")
    if not args.no_qemu and not qemu:
        sys.exit("qemu-system-x86_64 not found (apt-get install qemu-system-x86), or pass --no-qemu")
    try:
        linux = debian_linux.debian_linux(MODULES)
    except debian_linux.ToolError as e:
        sys.exit(str(e))
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "disk.img"
        with open(image, "wb") as f:
            for _ in range(args.size_mib):
                f.write(os.urandom(1024 * 1024))
        common = ["-m", "256M", "-nographic", "-no-reboot", "-kernel", str(linux.vmlinux),
                  "-initrd", str(linux.initrd), "-append", "console=ttyS0 quiet",
                  "-drive", f"file={image},if=none,id=d0,format=raw,cache={args.cache}",
                  "-device", "virtio-blk-pci,drive=d0,disable-legacy=on"]
        emulators = [("pyhv", [sys.executable, "-m", "devicemodel", *common])]
        if qemu:
            emulators.append(("QEMU TCG", [qemu, "-accel", "tcg", *common]))
        print(f"virtio-blk, {args.size_mib} MiB raw image, dd bs={args.bs}, cache={args.cache}; "
              f"MB/s timed in the guest")
        print(f"{'emulator':<10} {'read':>10} {'write':>10}")
        rates = {}
        for name, cmd in emulators:
            rates[name] = measure(cmd, args.size_mib, args.bs, args.timeout)
            print(f"{name:<10} {rates[name][0]:>10.1f} {rates[name][1]:>10.1f}", flush=True)
        if "QEMU TCG" in rates:
            (pr, pw), (qr, qw) = rates["pyhv"], rates["QEMU TCG"]
            print(f"{'pyhv/QEMU':<10} {pr / qr:>9.2f}x {pw / qw:>9.2f}x")


if __name__ == "__main__":
    main()
