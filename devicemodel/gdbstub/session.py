"""One gdb connection: the GDB remote serial protocol in all-stop mode, with vCPUs as
threads (1 = vCPU 0).  Packets handled, with QEMU's replies where QEMU has them:

  qSupported, QStartNoAckMode, qXfer:features:read:target.xml, qAttached, qC,
  qfThreadInfo/qsThreadInfo, qThreadExtraInfo, qSymbol, vMustReplyEmpty,
  ? g G p P m M X Z0-Z4 z0-z4 H T c C s S vCont? vCont;c/C/s/S D k, and Ctrl-C.

Anything else gets the empty reply that means "not supported"; a malformed packet gets
an error reply (Exx), never an exception.  While the VM runs, the session waits for a
stop (reported with T05/T02 and the thread, plus swbreak/hwbreak/watch/rwatch/awatch)
or for Ctrl-C; when the VM ends, gdb hears W with its exit status."""

from __future__ import annotations

import re
import select
import socket
from typing import Optional

from devicemodel.errors import error_report
from devicemodel.gdbstub.debugger import Debugger, Stop, Z_ACCESS, Z_SW
from devicemodel.gdbstub.packets import (BadPacket, Interrupt, MAX_PACKET, PacketReader, escape_binary,
                                         frame, unescape_binary)
from devicemodel.gdbstub.registers import I386, X86_64, Layout, RegisterFile
from devicemodel.runstate import PAUSED
from kvm.constants import KVM_MP_STATE_HALTED, KVM_MP_STATE_INIT_RECEIVED

POLL = 0.2             # seconds between looks at whether the VM has ended
EFER_LMA, CS_L = 1 << 10, 1 << 13
ERR_BAD, ERR_MEMORY = b"E22", b"E14"   # EINVAL, EFAULT


class Disconnect(Exception):
    """gdb detached, killed the VM, or went away."""


class GdbSession:
    def __init__(self, sock: socket.socket, debugger: Debugger, wakeup: socket.socket,
                 layout: Optional[Layout] = None):
        self.sock = sock
        self.debugger = debugger
        self.machine = debugger.machine
        self.wakeup = wakeup
        self.reader = PacketReader()
        self.ack = True
        self.fixed_layout = layout
        self.layout: Optional[Layout] = None
        self.g_thread = 0      # vCPU for registers and memory (Hg)
        self.c_thread = 0      # vCPU for c and s (Hc)
        self.running = False
        self.last_stop = Stop(0)

    # ---- transport ------------------------------------------------------------------------

    def send(self, payload: bytes):
        self.sock.sendall(frame(payload))

    def serve(self):
        """Until gdb goes away (or the VM ends)."""
        if self.machine.pause(PAUSED):           # a running VM stops when gdb connects
            self.last_stop = Stop(0)
        try:
            while True:
                readable = self._wait()
                if self.wakeup in readable:
                    self._drain_wakeup()
                if self.running and self.debugger.stop is not None:
                    self._report_stop()
                if self.sock in readable:
                    data = self.sock.recv(MAX_PACKET)
                    if not data:
                        raise Disconnect()
                    for event in self.reader.feed(data):
                        self._handle_event(event)
                if self.machine.runstate.stop_requested:
                    status = self.machine.runstate.exit_status or 0
                    self.send(b"W%02x" % (status & 0xFF))
                    raise Disconnect()
        except Disconnect:
            pass
        except OSError:
            pass          # the connection broke
        finally:
            if not self.machine.runstate.stop_requested:
                self.debugger.end()

    def _wait(self):
        readable, _, _ = select.select([self.sock, self.wakeup], [], [], POLL)
        return readable

    def _drain_wakeup(self):
        try:
            self.wakeup.recv(4096)
        except BlockingIOError:
            pass

    def _handle_event(self, event):
        if isinstance(event, Interrupt):
            if self.running:
                self.debugger.interrupt(self.c_thread)
            return
        if isinstance(event, BadPacket):
            if self.ack:
                self.sock.sendall(b"-")
            return
        if self.ack:
            self.sock.sendall(b"+")
        if self.running:
            return          # all-stop: gdb waits for the stop before sending more
        reply = self.dispatch(event.payload)
        if reply is not None:
            self.send(reply)

    def _report_stop(self):
        stop = self.debugger.take_stop()
        if stop is None:
            return
        self.running = False
        self.last_stop = stop
        self.g_thread = self.c_thread = stop.thread
        self.send(self.stop_reply(stop))

    @staticmethod
    def stop_reply(stop: Stop) -> bytes:
        reply = b"T%02xthread:%x;" % (stop.signal, stop.thread + 1)
        if stop.reason in ("swbreak", "hwbreak"):
            reply += stop.reason.encode() + b":;"
        elif stop.reason:
            reply += b"%s:%x;" % (stop.reason.encode(), stop.address)
        return reply

    # ---- commands --------------------------------------------------------------------------

    def dispatch(self, payload: bytes) -> Optional[bytes]:
        """The reply to one packet; None when there is none to send now (the VM was
        resumed: the stop reply follows; or the command sent its own)."""
        try:
            text = payload.decode("latin-1")
            command = text[:1]
            handler = self.COMMANDS.get(command)
            if handler is None:
                return b""
            return handler(self, text[1:], payload[1:])
        except (ValueError, IndexError):
            return ERR_BAD

    def vcpu(self, thread: Optional[int] = None):
        return self.machine.vcpus[self.g_thread if thread is None else thread]

    def _layout(self) -> Layout:
        """The target description: x86-64 for a vCPU in 64-bit mode or a kernel that is no
        32-bit ELF; i386 otherwise.  Chosen once per connection."""
        if self.layout is None:
            self.layout = self.fixed_layout or self._guess_layout()
        return self.layout

    def _guess_layout(self) -> Layout:
        sregs = self.vcpu(0).get_sregs()
        if sregs.efer & EFER_LMA and sregs.cs.l:
            return X86_64
        try:
            with open(self.machine.config.kernel, "rb") as f:
                ident = f.read(5)
        except OSError:
            ident = b""
        return I386 if ident == b"\x7fELF\x01" else X86_64

    def _registers(self) -> RegisterFile:
        vcpu = self.vcpu()
        return RegisterFile(vcpu, lambda address, n: self._read_exactly(vcpu, address, n))

    def _read_exactly(self, vcpu, address: int, length: int) -> Optional[bytes]:
        data = self.debugger.read_memory(vcpu, address, length)
        return data if len(data) == length else None

    def cmd_query(self, args: str, raw: bytes) -> bytes:
        if args.startswith("Supported"):
            return (b"PacketSize=%x;qXfer:features:read+;QStartNoAckMode+;swbreak+;hwbreak+;"
                    b"vContSupported+" % MAX_PACKET)
        if args.startswith("Xfer:features:read:"):
            return self._xfer_features(args[len("Xfer:features:read:"):])
        if args == "Attached":
            return b"1"
        if args == "C":
            return b"QC%x" % (self.g_thread + 1)
        if args == "fThreadInfo":
            return b"m" + b",".join(b"%x" % (n + 1) for n in range(len(self.machine.vcpus)))
        if args == "sThreadInfo":
            return b"l"
        if args.startswith("ThreadExtraInfo,"):
            index = self._thread(args.split(",", 1)[1])
            if index is None:
                return ERR_BAD
            halted = self.vcpu(index).get_mp_state() in (KVM_MP_STATE_HALTED, KVM_MP_STATE_INIT_RECEIVED)
            state = "halted" if halted else "running"
            return f"CPU#{index} [{state}]".encode().hex().encode()
        if args.startswith("Symbol"):
            return b"OK"
        return b""

    def _xfer_features(self, args: str) -> bytes:
        annex, _, span = args.partition(":")
        if annex != "target.xml":
            return b"E00"
        offset, length = (int(x, 16) for x in span.split(","))
        xml = self._layout().xml().encode()
        chunk = xml[offset:offset + length]
        return (b"l" if offset + length >= len(xml) else b"m") + escape_binary(chunk)

    def cmd_set_query(self, args: str, raw: bytes) -> bytes:
        if args == "StartNoAckMode":
            self.sock.sendall(frame(b"OK"))
            self.ack = False
            return None
        return b""

    def cmd_stop_reason(self, args: str, raw: bytes) -> bytes:
        return self.stop_reply(self.last_stop)

    def cmd_read_registers(self, args: str, raw: bytes) -> bytes:
        return self._layout().read_all(self._registers()).encode()

    def cmd_write_registers(self, args: str, raw: bytes) -> bytes:
        regs = self._registers()
        self._layout().write_all(regs, args)
        regs.commit()
        return b"OK"

    def cmd_read_register(self, args: str, raw: bytes) -> bytes:
        layout = self._layout()
        n = int(args, 16)
        if n >= len(layout.regs):
            return ERR_BAD
        reg = layout.regs[n]
        return layout.encode(reg, self._registers().get(reg.name)).encode()

    def cmd_write_register(self, args: str, raw: bytes) -> bytes:
        layout = self._layout()
        number, value = args.split("=")
        n = int(number, 16)
        if n >= len(layout.regs) or len(value) != layout.regs[n].bits // 4:
            return ERR_BAD
        regs = self._registers()
        if not regs.set(layout.regs[n].name, int.from_bytes(bytes.fromhex(value), "little")):
            return ERR_BAD
        regs.commit()
        return b"OK"

    def cmd_read_memory(self, args: str, raw: bytes) -> bytes:
        address, length = (int(x, 16) for x in args.split(","))
        if length * 2 > MAX_PACKET:
            return ERR_BAD
        data = self.debugger.read_memory(self.vcpu(), address, length)
        return data.hex().encode() if data or not length else ERR_MEMORY

    def cmd_write_memory(self, args: str, raw: bytes) -> bytes:
        where, hexdata = args.split(":", 1)
        address, length = (int(x, 16) for x in where.split(","))
        data = bytes.fromhex(hexdata)
        if len(data) != length:
            return ERR_BAD
        return b"OK" if self.debugger.write_memory(self.vcpu(), address, data) else ERR_MEMORY

    def cmd_write_binary(self, args: str, raw: bytes) -> bytes:
        where, _, binary = raw.partition(b":")
        address, length = (int(x, 16) for x in where.decode().split(","))
        data = unescape_binary(binary)
        if len(data) != length:
            return ERR_BAD
        if not length:
            return b"OK"     # gdb probes for X support with an empty write
        return b"OK" if self.debugger.write_memory(self.vcpu(), address, data) else ERR_MEMORY

    def cmd_breakpoint(self, args: str, raw: bytes, insert: bool) -> bytes:
        ztype, address, kind = args.split(",")[:3]
        ztype, address, kind = int(ztype), int(address, 16), int(kind.split(";")[0], 16)
        if not Z_SW <= ztype <= Z_ACCESS:
            return b""
        if insert:
            ok = self.debugger.insert(ztype, address, kind, self.vcpu())
        else:
            ok = self.debugger.remove(ztype, address, kind)
        return b"OK" if ok else ERR_BAD

    def cmd_insert(self, args: str, raw: bytes) -> bytes:
        return self.cmd_breakpoint(args, raw, True)

    def cmd_remove(self, args: str, raw: bytes) -> bytes:
        return self.cmd_breakpoint(args, raw, False)

    def _thread(self, text: str) -> Optional[int]:
        """A thread id: -1 (all) and 0 (any) are vCPU 0 here; None if there is no such."""
        n = int(text, 16) if text not in ("-1", "0") else 1
        return n - 1 if 1 <= n <= len(self.machine.vcpus) else None

    def cmd_set_thread(self, args: str, raw: bytes) -> bytes:
        which, thread = args[:1], args[1:]
        index = self._thread(thread)
        if index is None or which not in "gc":
            return ERR_BAD
        if which == "g":
            self.g_thread = index
        else:
            self.c_thread = index
        return b"OK"

    def cmd_thread_alive(self, args: str, raw: bytes) -> bytes:
        return b"OK" if self._thread(args) is not None else ERR_BAD

    def _resume(self, actions: dict[int, str], address: Optional[int] = None) -> None:
        if address is not None:
            regs = self.vcpu(self.c_thread).get_regs()
            regs.rip = address
            self.vcpu(self.c_thread).set_regs(regs)
        self.running = True
        self.debugger.resume(actions)
        return None

    def _all(self, action: str) -> dict[int, str]:
        """c/s: the Hc vCPU does `action`; for a step the others stay stopped."""
        if action == "s":
            return {self.c_thread: "s"}
        return {n: "c" for n in range(len(self.machine.vcpus))}

    def cmd_continue(self, args: str, raw: bytes) -> Optional[bytes]:
        return self._resume(self._all("c"), int(args, 16) if args else None)

    def cmd_step(self, args: str, raw: bytes) -> Optional[bytes]:
        return self._resume(self._all("s"), int(args, 16) if args else None)

    def cmd_continue_signal(self, args: str, raw: bytes) -> Optional[bytes]:
        _, _, address = args.partition(";")       # the signal means nothing to a VM
        return self._resume(self._all("c"), int(address, 16) if address else None)

    def cmd_step_signal(self, args: str, raw: bytes) -> Optional[bytes]:
        _, _, address = args.partition(";")
        return self._resume(self._all("s"), int(address, 16) if address else None)

    def cmd_v(self, args: str, raw: bytes) -> Optional[bytes]:
        if args == "Cont?":
            return b"vCont;c;C;s;S"
        if args.startswith("Cont;"):
            return self._vcont(args[len("Cont;"):])
        return b""    # vMustReplyEmpty and the rest

    def _vcont(self, spec: str) -> Optional[bytes]:
        """vCont;action[:thread];...: the first action that names a vCPU applies to it."""
        actions: dict[int, str] = {}
        for part in spec.split(";"):
            match = re.fullmatch(r"([cCsS])(?:[0-9a-fA-F]{2})?(?::(-1|[0-9a-fA-F]+))?", part)
            if match is None:
                return ERR_BAD
            action, thread = match.group(1).lower(), match.group(2)
            if thread is None or thread == "-1":
                targets = range(len(self.machine.vcpus))
            else:
                index = self._thread(thread)
                if index is None:
                    return ERR_BAD
                targets = [index]
            for index in targets:
                actions.setdefault(index, action)
        return self._resume(actions)

    def cmd_detach(self, args: str, raw: bytes) -> bytes:
        self.sock.sendall(frame(b"OK"))
        raise Disconnect()

    def cmd_kill(self, args: str, raw: bytes) -> bytes:
        error_report("terminated via GDBstub")
        self.machine.request_exit(0)
        raise Disconnect()

    COMMANDS = {
        "q": cmd_query, "Q": cmd_set_query, "?": cmd_stop_reason,
        "g": cmd_read_registers, "G": cmd_write_registers,
        "p": cmd_read_register, "P": cmd_write_register,
        "m": cmd_read_memory, "M": cmd_write_memory, "X": cmd_write_binary,
        "Z": cmd_insert, "z": cmd_remove,
        "H": cmd_set_thread, "T": cmd_thread_alive,
        "c": cmd_continue, "s": cmd_step, "C": cmd_continue_signal, "S": cmd_step_signal,
        "v": cmd_v, "D": cmd_detach, "k": cmd_kill,
    }
