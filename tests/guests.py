"""Helpers for the guest kernels in firmware/: building them, running them under
QEMU for comparison, and the output the test kernels must produce.

This is a helper module, not a test file; conftest.py puts tests/ on sys.path,
so tests import it as ``import guests``.
"""

from __future__ import annotations

import os
import selectors
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIRMWARE_SRC = REPO / "firmware"
# Where guest_path() builds when no build_firmware() call happened yet
# (firmware/out is ignored by git).
DEFAULT_FIRMWARE_OUT = Path(os.environ.get("PYHV_FIRMWARE_OUT", FIRMWARE_SRC / "out"))

QEMU_BINARY = "qemu-system-x86_64"
QEMU_PACKAGE = "qemu-system-x86"
DEBUG_EXIT_ARGS = ["-device", "isa-debug-exit,iobase=0xf4,iosize=4"]

# Text the kernels print (see firmware/kernels/*.c).
HELLO_BANNER = "pyhv hello test kernel"
HELLO_EXIT_CODE = 0x21
EXITS_BANNER = "exits test"
EXITS_EXIT_CODE = 0x10
DEFAULT_GREETING = "pyhv default guest: hello from VMX non-root mode!"
DEFAULT_LAST_LINE = "This guest has nothing more to do: halting the CPU (cli; hlt)."


def exit_status(code: int) -> int:
    """The process exit status isa-debug-exit produces for a guest byte CODE."""
    return (code << 1) | 1


# --------------------------------------------------------------------------
# building

_build_lock = threading.Lock()
_built: set[Path] = set()
_firmware_dir: Path | None = None


def build_firmware(out_dir) -> Path:
    """Build every kernel into OUT_DIR/<name>.elf (once per process and
    directory) and make OUT_DIR the one guest_path() uses. Returns OUT_DIR."""
    global _firmware_dir
    out = Path(out_dir).resolve()
    with _build_lock:
        if out not in _built:
            cmd = ["make", "-C", str(FIRMWARE_SRC), f"OUT={out}", f"-j{os.cpu_count() or 1}"]
            r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError(
                    f"firmware build failed ({' '.join(cmd)}, status {r.returncode}):\n"
                    f"{r.stdout}\n{r.stderr}"
                )
            _built.add(out)
        _firmware_dir = out
    return out


def guest_path(name: str, firmware_dir=None) -> Path:
    """Path of the built kernel NAME (e.g. "hello"), building if needed."""
    d = Path(firmware_dir) if firmware_dir is not None else _firmware_dir
    if d is None:
        d = build_firmware(DEFAULT_FIRMWARE_OUT)
    path = d / f"{name}.elf"
    if not path.is_file():
        raise FileNotFoundError(f"no guest kernel {name!r}: {path} does not exist")
    return path


# --------------------------------------------------------------------------
# pyhv

PYHV = [sys.executable, "-m", "devicemodel"]


def run_pyhv(*args, timeout=120):
    """Run the pyhv command line; (exit status, stdout without carriage returns, stderr)."""
    r = subprocess.run(PYHV + list(args), stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=timeout)
    return r.returncode, r.stdout.replace("\r", ""), r.stderr


# --------------------------------------------------------------------------
# QEMU

class QemuUnavailable(RuntimeError):
    pass


_qemu_lock = threading.Lock()


def ensure_qemu() -> str:
    """Return the path of qemu-system-x86_64, installing Debian's
    qemu-system-x86 package with apt-get if it is missing."""
    with _qemu_lock:
        path = shutil.which(QEMU_BINARY)
        if path:
            return path
        apt = shutil.which("apt-get")
        if apt is None:
            raise QemuUnavailable(
                f"{QEMU_BINARY} is not installed and apt-get is not available; "
                f"install QEMU ({QEMU_PACKAGE}) by hand"
            )
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        lock_wait = ["-o", "DPkg::Lock::Timeout=600"]

        def apt_get(*args):
            return subprocess.run([apt, *lock_wait, *args], env=env, stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True)

        r = apt_get("install", "-y", QEMU_PACKAGE)
        if r.returncode != 0:
            apt_get("update")
            r = apt_get("install", "-y", QEMU_PACKAGE)
        path = shutil.which(QEMU_BINARY)
        if path is None:
            tail = "\n".join((r.stdout + r.stderr).splitlines()[-20:])
            raise QemuUnavailable(
                f"{QEMU_BINARY} is missing and `apt-get install -y {QEMU_PACKAGE}` "
                f"failed (status {r.returncode}):\n{tail}"
            )
        return path


class QemuResult(tuple):
    """(exit_status, stdout_text) with extra attributes.

    exit_status is None when QEMU was killed (timeout, or `until` seen).
    stdout_text is the serial output with carriage returns removed.
    Also: .stderr (QEMU's own messages), .timed_out, .until_seen.
    """

    def __new__(cls, status, output, stderr="", timed_out=False, until_seen=False):
        self = super().__new__(cls, (status, output))
        self.status = status
        self.output = output
        self.stderr = stderr
        self.timed_out = timed_out
        self.until_seen = until_seen
        return self


def run_qemu(kernel, append=None, timeout=60, until=None, memory="128M", extra_args=()):
    """Boot KERNEL (a Multiboot ELF) under QEMU/TCG with the serial port on
    stdout and the isa-debug-exit device. Returns (exit_status, stdout_text).

    QEMU is killed after TIMEOUT seconds, or as soon as the text UNTIL appears
    in the output (for guests that never exit, e.g. the default guest); in
    both cases exit_status is None.
    """
    cmd = [ensure_qemu(), "-accel", "tcg", "-nographic", "-no-reboot", "-m", memory,
           *DEBUG_EXIT_ARGS, "-kernel", str(kernel)]
    if append is not None:
        cmd += ["-append", append]
    cmd += list(extra_args)

    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    out, err = bytearray(), bytearray()
    timed_out = until_seen = False
    deadline = time.monotonic() + timeout
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ, out)
    sel.register(proc.stderr, selectors.EVENT_READ, err)
    try:
        while sel.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            for key, _ in sel.select(min(remaining, 0.5)):
                chunk = os.read(key.fileobj.fileno(), 65536)
                if not chunk:
                    sel.unregister(key.fileobj)
                    continue
                key.data.extend(chunk)
                if until is not None and key.data is out and \
                        until in out.decode("utf-8", "replace").replace("\r", ""):
                    until_seen = True
            if until_seen:
                break
    finally:
        sel.close()
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        # collect whatever is still buffered in the pipes
        for stream, buf in ((proc.stdout, out), (proc.stderr, err)):
            try:
                buf += stream.read()
            except (OSError, ValueError):
                pass
            stream.close()

    status = None if (timed_out or until_seen) else proc.returncode
    text = out.decode("utf-8", "replace").replace("\r", "")
    return QemuResult(status, text, err.decode("utf-8", "replace"), timed_out, until_seen)


def serial_lines(text: str, first: str) -> list[str]:
    """The lines of TEXT from the first occurrence of FIRST on. Anything
    before it on the same line (e.g. the BIOS's "Booting from ROM..") is
    dropped. Raises ValueError when FIRST does not occur."""
    i = text.find(first)
    if i < 0:
        raise ValueError(f"{first!r} not found in guest output:\n{text}")
    return text[i:].split("\n")


# --------------------------------------------------------------------------
# expected output of the hello kernel, computed independently in Python

M32 = 0xFFFFFFFF
M64 = (1 << 64) - 1


def _s32(x: int) -> int:
    x &= M32
    return x - (1 << 32) if x & 0x80000000 else x


def _tdiv(a: int, b: int) -> int:
    """C division: truncates toward zero."""
    q = abs(a) // abs(b)
    return q if (a < 0) == (b < 0) else -q


def _tmod(a: int, b: int) -> int:
    return a - b * _tdiv(a, b)


def _rol32(x: int, n: int) -> int:
    return ((x << (n & 31)) | (x >> ((32 - n) & 31))) & M32


def _ror32(x: int, n: int) -> int:
    return ((x >> (n & 31)) | (x << ((32 - n) & 31))) & M32


def _primes_below(limit: int) -> int:
    sieve = bytearray([1]) * limit
    sieve[0:2] = b"\0\0"
    for i in range(2, int(limit ** 0.5) + 1):
        if sieve[i]:
            sieve[i * i::i] = bytes(len(range(i * i, limit, i)))
    return sum(sieve)


def hello_lcg_buffer(n: int = 4096, seed: int = 12345) -> tuple[bytes, int]:
    state, buf = seed, bytearray()
    for _ in range(n):
        state = (state * 1103515245 + 12345) & M32
        buf.append((state >> 16) & 0xFF)
    return bytes(buf), state


def _apply_op(op: int, x: int) -> int:
    ops = {
        0: lambda: x + 1,
        1: lambda: x * 3,
        2: lambda: x ^ 0x5A5A5A5A,
        3: lambda: x >> 3,
        4: lambda: x << 5,
        5: lambda: ~x,
        6: lambda: x - 0x1234,
        7: lambda: (x << 7) | (x >> 25),
        8: lambda: x & 0xFFFF,
        9: lambda: x | 0x80000001,
        10: lambda: x * x,
        11: lambda: -x,
    }
    return (ops[op]() if op in ops else x) & M32


def hello_expected_lines() -> list[str]:
    """The computed lines of the hello kernel, in order: everything after the
    banner up to (not including) the Multiboot lines ("magic: ...")."""
    import zlib

    lines = [f"primes below 50000: {_primes_below(50000)}"]

    buf, state = hello_lcg_buffer()
    lines.append(f"lcg state: 0x{state:08x}")
    lines.append(f"crc32: 0x{zlib.crc32(buf):08x}")

    calls = 0

    def fib(n):
        nonlocal calls
        calls += 1
        return n if n < 2 else fib(n - 1) + fib(n - 2)

    lines.append(f"fib(20): {fib(20)}")
    lines.append(f"fib calls: {calls}")

    items = [((i * 37 + 11) % 64, i * 3 + 1, chr(ord("a") + i % 26), (i - 32) * (i + 5))
             for i in range(64)]
    items.sort(key=lambda it: it[0])
    total = sum(it[3] for it in items)
    weighted = sum((j + 1) * it[3] for j, it in enumerate(items))
    weight = sum(it[1] for it in items)
    tags = "".join(it[2] for it in items[:12])
    lines.append(f"struct: sum={total} weighted={weighted} weight={weight} tags={tags}")

    neg = "%d %d %d %i %5d|%-5d|%05d|%x" % (-1, -42, -2 ** 31, -100000, -42, -7, -42,
                                            (-2) & M32)
    lines.append(f"negatives: {neg}")
    lines.append(f"negatives length: {len(neg)}")
    lines.append(f"negative sum: {-sum(i * i for i in range(1, 101))}")
    full = str(-2 ** 31)
    lines.append(f"truncated: {full[:7]} ({len(full)})")

    acc = 1
    for i in range(200):
        acc = (_apply_op(i % 14, acc) + i) & M32
    lines.append(f"switch: 0x{acc:08x}")
    text = "The quick brown fox jumps over 13 lazy dogs in 2024!"
    vowels = sum(c in "aeiouAEIOU" for c in text)
    digits = sum(c.isdigit() for c in text)
    spaces = sum(c in " \t" for c in text)
    letters = sum(c.isascii() and c.isalpha() for c in text)
    other = len(text) - letters - digits - spaces
    lines.append(f"switch chars: vowels={vowels} consonants={letters - vowels} "
                 f"digits={digits} spaces={spaces} other={other}")

    sa = [-7, 7, -7, -2 ** 31, 2 ** 31 - 1, -1000000]
    sb = [2, -2, -2, 3, -10, 7]
    ua = [0xFFFFFFFF, 0x80000000, 123456789, 4000000000]
    ub = [7, 3, 1000, 65536]
    lines.append("sdiv: " + " ".join(str(_tdiv(a, b)) for a, b in zip(sa, sb)))
    lines.append("smod: " + " ".join(str(_tmod(a, b)) for a, b in zip(sa, sb)))
    lines.append("udiv: " + " ".join(str(a // b) for a, b in zip(ua, ub)))
    lines.append("umod: " + " ".join(str(a % b) for a, b in zip(ua, ub)))
    lines.append(f"mul: 0x{(123456789 * 987654321) & M32:08x} {_s32(-12345 * 6789)}")
    lines.append(f"mul64: 0x{(123456789 * 987654321) & M64:016x} "
                 f"0x{(-123456789 * 987654321) & M64:016x}")

    s, q, r, sacc = 0x9E3779B9, 0, 0, 0
    for i in range(1, 1001):
        s = (s * 1664525 + 1013904223) & M32
        d = (s >> 20) + 1
        q = (q + s // d) & M32
        r = (r + s % d) & M32
        sv, sd = _s32(s), _s32((i * 7 - 3500) | 1)
        sacc = (sacc + _tdiv(sv, sd) + _tmod(sv, sd)) & M32
    lines.append(f"divloop: q=0x{q:08x} r=0x{r:08x} s=0x{sacc:08x}")

    x, acc = 0x87654321, 0
    for n in range(32):
        acc ^= (x << n) & M32
        acc = (acc + (x >> n)) & M32
        acc ^= (_s32(x) >> n) & M32
        acc = (acc + _rol32(x, n)) & M32
        acc ^= _ror32(x, n)
    lines.append(f"shifts: 0x{acc:08x}")
    lines.append(f"sar: {-1000 >> 3} rol: 0x{_rol32(0x12345678, 8):08x} "
                 f"ror: 0x{_ror32(0x12345678, 4):08x}")
    return lines
