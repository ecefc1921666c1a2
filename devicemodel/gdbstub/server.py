"""The gdbstub's socket: ``-gdb tcp:[HOST]:PORT`` (``-s`` is ``-gdb tcp::1234``), bound
when the machine is built so that a busy port is a startup error, served on a thread
of its own once the VM runs.  One gdb at a time, as with QEMU; when it goes, the next
may connect."""

from __future__ import annotations

import os
import socket
import threading
from typing import Optional

from devicemodel.errors import ConfigError
from devicemodel.gdbstub.debugger import Debugger
from devicemodel.gdbstub.session import GdbSession
from devicemodel.gdbstub.spec import parse_gdb_spec


class GdbServer:
    def __init__(self, machine, spec: str):
        self.spec = spec
        self.debugger = Debugger(machine)
        self._listener = None
        self._wake_read, self._wake_write = socket.socketpair()
        self._wake_read.setblocking(False)
        self.debugger.notify = self._notify
        address = parse_gdb_spec(spec)
        if address is None:
            return
        host, port = address
        try:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            listener = socket.create_server((host, port), family=family)
        except OSError as e:
            raise ConfigError(f"-gdb {spec}: Failed to bind socket: {os.strerror(e.errno)}") from None
        self._listener = listener

    @property
    def port(self) -> Optional[int]:
        return self._listener.getsockname()[1] if self._listener else None

    def _notify(self):
        try:
            self._wake_write.send(b"!")
        except OSError:
            pass

    def start(self) -> None:
        if self._listener is not None:
            threading.Thread(target=self._serve, name="gdbstub", daemon=True).start()

    def debug_exit(self, index: int, run) -> None:
        """KVM_EXIT_DEBUG of vCPU ``index`` (called on its thread)."""
        self.debugger.debug_exit(index, run)

    def _serve(self) -> None:
        listener = self._listener
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return     # closed
            with conn:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                GdbSession(conn, self.debugger, self._wake_read).serve()

    def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        self._wake_read.close()
        self._wake_write.close()
