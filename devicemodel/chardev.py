"""Character-device backends (QEMU's ``-chardev``, and the short forms of ``-serial``,
``-monitor``, ``-qmp`` and ``-debugcon``).

A backend carries bytes between a front end (a UART, the monitor, QMP) and the host:
``write(data)`` sends the front end's output; ``start_input(deliver, quit, opened)``
starts passing the host's input to ``deliver(bytes)``, calls ``opened()`` whenever a
peer connects (at once for backends that are always there), and ``quit()`` when the
user asks to end pyhv (C-a x). ``label`` and ``filename`` are what ``info chardev`` and
``query-chardev`` show.

Specs, as QEMU spells them:

* ``stdio``, ``null``, ``file:PATH``, ``pty``
* ``tcp:[HOST]:PORT[,server=on|off][,wait=on|off][,nodelay=on|off]`` and
  ``unix:PATH[,server=on|off][,wait=on|off]``; the legacy flags ``server`` and
  ``nowait`` mean ``server=on`` and ``wait=off``. A server waits for its first client
  before the VM starts unless ``wait=off``; it serves one client at a time and drops
  output while nobody is connected. Without ``server`` pyhv connects as a client.
* ``mon:SPEC``: the backend shared by the front end and a monitor (a multiplexer, see
  devicemodel/chardev_mux.py).
* ``chardev:ID``: a backend defined with ``-chardev BACKEND,id=ID[,opts][,mux=on]``.
"""

from __future__ import annotations

import os
import socket
import sys
import termios
import threading
import tty
from dataclasses import dataclass, field
from typing import Optional

from devicemodel.chardev_batch import OutputBatch
from devicemodel.errors import ConfigError
from devicemodel.qemu_opts import parse_opts, split_elements

CTRL_A = 0x01
ESCAPE_HELP = (b"\r\nC-a h    print this help\r\nC-a x    exit emulator\r\n"
               b"C-a C-a  sends C-a\r\n")


def _nothing(*args) -> None:
    pass


class Chardev:
    """What every backend has; subclasses override what they do differently."""

    label = ""

    @property
    def filename(self) -> str:
        return self.spec

    def write(self, data: bytes) -> None:
        pass

    def start_input(self, deliver, quit=None, opened=None) -> None:
        if opened is not None:
            opened()

    def close(self) -> None:
        pass


class StdioChardev(Chardev):
    """Standard output (written in batches a few milliseconds after the front end's
    writes, devicemodel/chardev_batch.py) and, once ``start_input`` is called, standard
    input.  A terminal is put in raw mode, as QEMU's -nographic does, so keys reach the
    guest; QEMU's Ctrl-A escapes work (C-a x quits) unless a multiplexer above handles
    them (``escapes=False``)."""

    spec = "stdio"

    def __init__(self, escapes: bool = True) -> None:
        self.escapes = escapes
        self._broken = False
        self._saved_tty = None
        self._out = OutputBatch(self._send)

    @property
    def is_terminal(self) -> bool:
        try:
            return os.isatty(sys.stdin.fileno())
        except (AttributeError, ValueError, OSError):
            return False

    def start_input(self, deliver, quit=None, opened=None) -> None:
        """Read stdin in a thread, passing bytes to ``deliver``; ``quit()`` on C-a x."""
        if opened is not None:
            opened()
        try:
            fd = sys.stdin.fileno()
        except (AttributeError, ValueError, OSError):
            return
        if os.isatty(fd):
            self._saved_tty = (fd, termios.tcgetattr(fd))
            tty.setraw(fd)
        threading.Thread(target=self._read_loop, args=(fd, deliver, quit), name="stdin",
                         daemon=True).start()

    def _read_loop(self, fd: int, deliver, quit) -> None:
        escaped = False
        while True:
            try:
                data = os.read(fd, 1024)
            except OSError:
                return
            if not data:
                return
            if self._saved_tty is None or not self.escapes:   # not a terminal: no escapes
                deliver(data)
                continue
            out = bytearray()
            for byte in data:
                if escaped:
                    escaped = False
                    if byte == ord("x"):
                        self.write(b"\r\npyhv: terminated by C-a x\r\n")
                        if quit is not None:
                            quit()
                        return
                    if byte == ord("h"):
                        self.write(ESCAPE_HELP)
                    elif byte == CTRL_A:
                        out.append(CTRL_A)
                elif byte == CTRL_A:
                    escaped = True
                else:
                    out.append(byte)
            if out:
                deliver(bytes(out))

    def write(self, data: bytes) -> None:
        if not self._broken:
            self._out.write(data)

    def _send(self, data: bytes) -> None:
        if self._broken:
            return
        out = sys.stdout  # looked up on each write: whoever redirected stdout gets the bytes
        try:
            out.flush()
            out.buffer.write(data)
            out.buffer.flush()
        except (BrokenPipeError, ValueError):
            self._broken = True  # the reader went away: drop output, as QEMU does

    def close(self) -> None:
        self._out.close()
        if self._saved_tty is not None:
            fd, attrs = self._saved_tty
            termios.tcsetattr(fd, termios.TCSADRAIN, attrs)
            self._saved_tty = None


class NullChardev(Chardev):
    """Discards everything."""

    spec = "null"


class FileChardev(Chardev):
    """A file, created or truncated when the backend opens (as QEMU's ``file:`` backend)."""

    filename = "file"

    def __init__(self, path: str):
        self.spec = f"file:{path}"
        try:
            self._file = open(path, "wb", buffering=0)
        except OSError as e:
            raise ConfigError(f"could not open '{path}': {e.strerror}") from None

    def write(self, data: bytes) -> None:
        self._file.write(data)

    def close(self) -> None:
        self._file.close()


class PtyChardev(Chardev):
    """A new pseudo-terminal; its name is printed as QEMU prints it."""

    def __init__(self, label: str = ""):
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.path = os.ttyname(self._slave)
        self.spec = "pty"
        print(f"char device redirected to {self.path} (label {label})", file=sys.stderr, flush=True)

    @property
    def filename(self) -> str:
        return f"pty:{self.path}"

    def start_input(self, deliver, quit=None, opened=None) -> None:
        if opened is not None:
            opened()
        threading.Thread(target=self._read_loop, args=(deliver,), name="pty", daemon=True).start()

    def _read_loop(self, deliver) -> None:
        while True:
            try:
                data = os.read(self._master, 4096)
            except OSError:
                return
            if not data:
                return
            deliver(data)

    def write(self, data: bytes) -> None:
        try:
            os.write(self._master, data)
        except OSError:
            pass

    def close(self) -> None:
        for fd in (self._master, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass


@dataclass
class SocketAddress:
    """Where a ``tcp:`` or ``unix:`` chardev listens or connects."""

    kind: str                 # "tcp" or "unix"
    host: str = ""
    port: int = 0
    path: str = ""
    server: bool = False
    wait: bool = True
    options: dict = field(default_factory=dict)

    def describe(self) -> str:
        where = f"{self.host or '0.0.0.0'}:{self.port}" if self.kind == "tcp" else self.path
        return f"{self.kind}:{where}" + (",server=on" if self.server else "")


class SocketChardev(Chardev):
    """A stream socket: a server with one client at a time, or a client."""

    def __init__(self, address: SocketAddress, spec: str):
        self.address = address
        self.spec = spec
        self._conn: Optional[socket.socket] = None
        self._peer = ""
        self._listener: Optional[socket.socket] = None
        self._closed = False
        self._lock = threading.Lock()
        family = socket.AF_UNIX if address.kind == "unix" else socket.AF_INET
        target = address.path if address.kind == "unix" else (address.host or "0.0.0.0", address.port)
        try:
            if address.server:
                self._listener = socket.socket(family, socket.SOCK_STREAM)
                if family == socket.AF_INET:
                    self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                elif os.path.exists(address.path):
                    os.unlink(address.path)
                self._listener.bind(target)
                self._listener.listen(1)
                if address.kind == "tcp" and address.port == 0:
                    address.port = self._listener.getsockname()[1]
            else:
                conn = socket.create_connection(target) if family == socket.AF_INET else \
                    socket.socket(family, socket.SOCK_STREAM)
                if family == socket.AF_UNIX:
                    conn.connect(target)
                self._set_connection(conn)
        except OSError as e:
            self.close()
            raise ConfigError(f"Failed to {'bind' if address.server else 'connect'} socket "
                              f"{address.describe()}: {e.strerror or e}") from None
        if address.server and address.wait:
            print(f"pyhv: waiting for connection on: disconnected:{address.describe()}",
                  file=sys.stderr, flush=True)
            self._accept()

    @property
    def filename(self) -> str:
        where = self.address.describe()
        if self._conn is None:
            return f"disconnected:{where}"
        return f"{where} <-> {self._peer}" if self.address.server else where

    def _set_connection(self, conn: socket.socket) -> None:
        if conn.family == socket.AF_INET:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            host, port = conn.getpeername()[:2]
            self._peer = f"{host}:{port}"
        else:
            self._peer = self.address.path
        with self._lock:
            self._conn = conn

    def _accept(self) -> bool:
        try:
            conn, _ = self._listener.accept()
        except OSError:
            return False
        self._set_connection(conn)
        return True

    def start_input(self, deliver, quit=None, opened=None) -> None:
        threading.Thread(target=self._serve, args=(deliver, opened or _nothing),
                         name=f"chardev-{self.label or self.address.kind}", daemon=True).start()

    def _serve(self, deliver, opened) -> None:
        while not self._closed:
            if self._conn is None and (self._listener is None or not self._accept()):
                return
            opened()
            conn = self._conn
            while True:
                try:
                    data = conn.recv(4096)
                except OSError:
                    data = b""
                if not data:
                    break
                deliver(data)
            with self._lock:
                self._conn = None
            conn.close()
            if self._listener is None:   # a client that lost its server stays disconnected
                return

    def write(self, data: bytes) -> None:
        with self._lock:
            conn = self._conn
        if conn is None:
            return                       # nobody connected: output is dropped, as in QEMU
        try:
            conn.sendall(data)
        except OSError:
            pass

    def disconnect(self) -> None:
        """Hang up on the current client (QMP does after a failed negotiation)."""
        with self._lock:
            conn = self._conn
        if conn is not None:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        self._closed = True
        self.disconnect()
        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._listener.close()
            if self.address.kind == "unix":
                try:
                    os.unlink(self.address.path)
                except OSError:
                    pass


def _flag(key: str, value: str) -> bool:
    if value in ("on", "yes", "true"):
        return True
    if value in ("off", "no", "false"):
        return False
    raise ConfigError(f"Parameter '{key}' expects 'on' or 'off'")


def parse_socket_address(kind: str, text: str) -> SocketAddress:
    """``HOST:PORT,opts`` (tcp) or ``PATH,opts`` (unix), with QEMU's legacy flags."""
    elements = split_elements(text)
    where, options = elements[0], {}
    for element in elements[1:]:
        key, eq, value = element.partition("=")
        if not eq:
            key, value = {"nowait": ("wait", "off"), "nodelay": ("nodelay", "on")}.get(key, (key, "on"))
        options[key] = value
    unknown = set(options) - {"server", "wait", "nodelay", "telnet", "ipv4", "ipv6"}
    if unknown:
        raise ConfigError(f"Invalid parameter '{sorted(unknown)[0]}'")
    address = SocketAddress(kind=kind, server=_flag("server", options.get("server", "off")),
                            wait=_flag("wait", options.get("wait", "on")), options=options)
    if kind == "unix":
        if not where:
            raise ConfigError("chardev 'unix' needs a path: unix:PATH")
        address.path = where
        return address
    host, colon, port = where.rpartition(":")
    if not colon or not port.isdigit() or int(port) > 0xFFFF:
        raise ConfigError(f"invalid tcp address '{where}' (use tcp:[HOST]:PORT)")
    address.host, address.port = host, int(port)
    return address


def check_chardev_spec(spec: str) -> None:
    """ConfigError unless ``spec`` names a backend (checked without opening anything)."""
    name, colon, rest = spec.partition(":")
    if name == "mon" and rest:
        return check_chardev_spec(rest)
    if name == "chardev":
        if not rest:
            raise ConfigError("chardev: needs an id: chardev:ID")
        return None
    if spec in ("stdio", "null", "pty") or (name == "file" and rest):
        return None
    if name == "file":
        raise ConfigError("chardev 'file' needs a path: file:PATH")
    if name in ("tcp", "unix"):
        parse_socket_address(name, rest)
        return None
    raise ConfigError(f"'{name}' is not a valid char driver name "
                      f"(use stdio, null, file:PATH, pty, tcp:HOST:PORT or unix:PATH)")


def open_chardev(spec: str, label: str = ""):
    """The backend for a spec; ConfigError if there is none or it cannot open."""
    check_chardev_spec(spec)
    name, _, rest = spec.partition(":")
    if spec == "stdio":
        chardev = StdioChardev()
    elif spec == "null":
        chardev = NullChardev()
    elif spec == "pty":
        chardev = PtyChardev(label)
    elif name in ("tcp", "unix"):
        chardev = SocketChardev(parse_socket_address(name, rest), spec)
    else:
        chardev = FileChardev(rest)
    chardev.label = label
    return chardev


@dataclass(frozen=True)
class ChardevDefinition:
    """A ``-chardev BACKEND,id=ID,...`` option: ``spec`` in the short form, and whether
    front ends share it through a multiplexer (``mux=on``)."""

    id: str
    spec: str
    mux: bool = False


def parse_chardev_option(text: str) -> ChardevDefinition:
    """``-chardev``: ``socket`` takes ``host``/``port`` or ``path``, ``file`` takes
    ``path``; the result is the equivalent short spec."""
    pairs = parse_opts(text, implied_key="backend")
    given = dict(pairs)
    backend = given.pop("backend", None)
    ident = given.pop("id", None)
    if not backend:
        raise ConfigError("Parameter 'backend' is missing")
    if not ident:
        raise ConfigError("Parameter 'id' is missing")
    mux = _flag("mux", given.pop("mux", "off"))
    if backend == "socket":
        flags = [f"{key}={given.pop(key)}" for key in ("server", "wait", "nodelay", "telnet")
                 if key in given]
        if "path" in given:
            spec = "unix:" + given.pop("path")
        elif "port" in given:
            spec = f"tcp:{given.pop('host', '')}:{given.pop('port')}"
        else:
            raise ConfigError("chardev: socket: 'host' and 'port', or 'path', is required")
        spec = ",".join([spec] + flags)
    elif backend == "file":
        if "path" not in given:
            raise ConfigError("chardev: file: 'path' is required")
        spec = "file:" + given.pop("path")
    elif backend in ("stdio", "null", "pty"):
        spec = backend
        given.pop("signal", None)
    else:
        raise ConfigError(f"'{backend}' is not a valid char driver name")
    if given:
        raise ConfigError(f"Invalid parameter '{next(iter(given))}'")
    check_chardev_spec(spec)
    return ChardevDefinition(ident, spec, mux)

