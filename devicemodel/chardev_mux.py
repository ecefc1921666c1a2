"""QEMU's character-device multiplexer (``mon:stdio``, ``-chardev ...,mux=on``): one
backend shared by several front ends, typically the guest's serial port and the monitor.

The backend's output is everyone's output; its input goes to the front end that has the
focus. Ctrl-A is the escape key, as in QEMU:

    C-a c    switch the focus to the next front end (console <-> monitor)
    C-a x    exit pyhv
    C-a h    print this help
    C-a C-a  send C-a itself

A front end gets a ``MuxPort``, which behaves like a backend of its own; ``focus_in``
callbacks tell a front end that it has just got the focus (the monitor shows its prompt).
"""

from __future__ import annotations

import threading

from devicemodel.chardev import CTRL_A, Chardev

MUX_HELP = (b"\r\nC-a h    print this help\r\nC-a x    exit emulator\r\n"
            b"C-a c    switch between console and monitor\r\nC-a C-a  sends C-a\r\n")


class MuxPort(Chardev):
    """One front end's view of the multiplexer."""

    def __init__(self, mux: "MuxChardev", index: int):
        self.mux = mux
        self.index = index
        self.deliver = None
        self.quit = None
        self.focus_in = None     # called when this front end gets the focus
        self.label = mux.label

    @property
    def spec(self) -> str:
        return self.mux.spec

    @property
    def filename(self) -> str:
        return "mux"

    @property
    def has_focus(self) -> bool:
        return self.mux.focus == self.index

    def write(self, data: bytes) -> None:
        self.mux.backend.write(data)

    def start_input(self, deliver, quit=None, opened=None) -> None:
        self.deliver, self.quit = deliver, quit
        if opened is not None:
            opened()
        self.mux.port_started()

    def close(self) -> None:
        self.mux.port_closed()


class MuxChardev:
    def __init__(self, backend, label: str = ""):
        self.backend = backend
        self.label = label
        self.spec = backend.spec
        self.ports: list[MuxPort] = []
        self.focus = 0
        self._escaped = False
        self._started = False
        self._open_ports = 0
        self._lock = threading.Lock()
        if hasattr(backend, "escapes"):
            backend.escapes = False   # the multiplexer handles C-a itself

    def port(self) -> MuxPort:
        port = MuxPort(self, len(self.ports))
        self.ports.append(port)
        self._open_ports += 1
        return port

    def port_started(self) -> None:
        with self._lock:
            if self._started:
                return
            self._started = True
        self.backend.start_input(self._input, quit=self._quit)

    def port_closed(self) -> None:
        self._open_ports -= 1
        if self._open_ports == 0:
            self.backend.close()

    def _quit(self) -> None:
        for port in self.ports:
            if port.quit is not None:
                port.quit()
                return

    def switch_focus(self) -> None:
        self.focus = (self.focus + 1) % len(self.ports)
        port = self.ports[self.focus]
        if port.focus_in is not None:
            port.focus_in()

    def _input(self, data: bytes) -> None:
        out = bytearray()
        for byte in data:
            if self._escaped:
                self._escaped = False
                if byte == ord("x"):
                    self._flush(out)
                    self.backend.write(b"\r\npyhv: terminated by C-a x\r\n")
                    self._quit()
                    return
                if byte == ord("h"):
                    self.backend.write(MUX_HELP)
                elif byte == ord("c"):
                    self._flush(out)
                    self.switch_focus()
                elif byte == CTRL_A:
                    out.append(CTRL_A)
            elif byte == CTRL_A:
                self._escaped = True
            else:
                out.append(byte)
        self._flush(out)

    def _flush(self, out: bytearray) -> None:
        if out:
            port = self.ports[self.focus]
            if port.deliver is not None:
                port.deliver(bytes(out))
            out.clear()
