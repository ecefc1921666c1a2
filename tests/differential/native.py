"""The host processor as the reference: native_runner.c compiled with cffi (API mode) on
first use into a cache directory keyed by its source, and a batch interface over it."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path

from cffi import FFI

from differential import layout

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "native_runner.c"
MODULE = "pyhv_native_runner"

CDEF = """
#define PYHV_NREGS ...
int pyhv_native_init(uint64_t region, uint64_t region_size, uint64_t code, uint64_t code_max,
                     uint64_t stub, uint64_t data, uint64_t data_size, uint64_t guard);
int pyhv_native_run(int mode32, size_t n, const uint8_t *code, const uint32_t *code_len,
                    size_t code_stride, const uint64_t *regs_in, uint64_t *regs_out,
                    const uint8_t *mem_in, uint8_t *mem_out, size_t mem_len);
"""


def _cache_dir() -> Path:
    text = SOURCE.read_bytes() + CDEF.encode() + sys.version.encode()
    digest = hashlib.sha256(text).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"pyhv-native-{digest}"


def _build(target: Path) -> None:
    ffi = FFI()
    ffi.cdef(CDEF)
    ffi.set_source(MODULE, SOURCE.read_text(), extra_compile_args=["-O2", "-Wall", "-Wextra"])
    work = Path(tempfile.mkdtemp(prefix="pyhv-native-build-"))
    try:
        ffi.compile(tmpdir=str(work), verbose=False)
        built = next(work.glob(f"{MODULE}*.so"))
        target.mkdir(parents=True, exist_ok=True)
        partial = target / (built.name + f".{os.getpid()}")
        shutil.copy(built, partial)
        os.replace(partial, target / built.name)   # atomic for concurrent sessions
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _load():
    cache = _cache_dir()
    found = list(cache.glob(f"{MODULE}*.so")) if cache.is_dir() else []
    if not found:
        _build(cache)
        found = list(cache.glob(f"{MODULE}*.so"))
    spec = importlib.util.spec_from_file_location(MODULE, found[0])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ffi, module.lib


class NativeCpu:
    """Runs batches of cases on the host: 64-bit mode, or compatibility mode (mode32)."""

    def __init__(self):
        self.ffi, self.lib = _load()
        rc = self.lib.pyhv_native_init(layout.REGION, layout.REGION_SIZE, layout.CODE,
                                       layout.CODE_MAX, layout.STUB, layout.DATA, layout.DATA_SIZE,
                                       layout.GUARD)
        if rc != 0:
            raise OSError(-rc, f"cannot map the snippet region at {layout.REGION:#x}")
        self._buffers = {}

    def _buffer(self, name: str, ctype: str, count: int):
        """A buffer kept from batch to batch (fresh megabytes would cost page faults)."""
        buf = self._buffers.get(name)
        if buf is None or len(buf) < count:
            buf = self._buffers[name] = self.ffi.new(f"{ctype}[]", count)
        return buf

    def run(self, mode32: bool, codes: list[bytes], regs: list[list[int]], mems: list[bytes]):
        """Returns ([PYHV_NREGS slots per case: GPRs, RFLAGS, signal, fault RIP, vector],
        [data buffer per case])."""
        ffi, lib = self.ffi, self.lib
        n = len(codes)
        nregs = lib.PYHV_NREGS
        stride = max(len(c) for c in codes)
        mem_len = len(mems[0])
        code = b"".join(c.ljust(stride, b"\x90") for c in codes)
        code_buf = self._buffer("code", "uint8_t", len(code))
        ffi.memmove(code_buf, code, len(code))
        code_len = self._buffer("code_len", "uint32_t", n)
        code_len[0:n] = [len(c) for c in codes]
        flat = []
        for r in regs:
            flat.extend(r)
            flat.extend([0] * (nregs - len(r)))
        regs_in = self._buffer("regs_in", "uint64_t", n * nregs)
        regs_in[0:n * nregs] = flat
        regs_out = self._buffer("regs_out", "uint64_t", n * nregs)
        mem_in = self._buffer("mem_in", "uint8_t", n * mem_len)
        for k, mem in enumerate(mems):
            ffi.memmove(mem_in + k * mem_len, mem, mem_len)
        mem_out = self._buffer("mem_out", "uint8_t", n * mem_len)
        rc = lib.pyhv_native_run(int(mode32), n, code_buf, code_len, stride, regs_in, regs_out,
                                 mem_in, mem_out, mem_len)
        if rc != 0:
            raise OSError(-rc, "native run failed")
        out = list(regs_out[0:n * nregs])
        return ([out[k * nregs:(k + 1) * nregs] for k in range(n)],
                [ffi.buffer(mem_out + k * mem_len, mem_len)[:] for k in range(n)])
