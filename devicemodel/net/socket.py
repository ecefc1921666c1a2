"""``-netdev socket``: frames over a TCP stream or UDP datagrams, as QEMU's net/socket.c.

Stream (``listen=`` / ``connect=``): each frame goes as its length (4 bytes, big-endian)
and then its bytes, so a pyhv VM talks to another pyhv VM or to a QEMU VM with the same
option. A listening backend takes one peer at a time and, when the peer hangs up, waits
for the next one; a connecting backend connects when pyhv starts (an error if nobody
listens) and stays disconnected once its peer is gone. While nobody is connected, what
the NIC sends is dropped. A peer announcing a frame larger than QEMU's NET_BUFSIZE
breaks the framing: pyhv reports it and hangs up, as QEMU does.

Sending never blocks the vCPU thread (it holds the big lock): frames wait in a short
queue that a writer thread sends; while it is full, ``can_send()`` is False and the NIC
leaves the guest's frames in its ring until ``writable()`` (QEMU's tx stall). Frames the
NIC sent before the VM ends still go out when the backend closes, as QEMU's send, which
writes at once, would have sent them.

Datagram (``udp=HOST:PORT,localaddr=HOST:PORT``): one frame per datagram, sent to
``udp=`` from a socket bound to ``localaddr=``; datagrams from anywhere are received.
"""

from __future__ import annotations

import socket
import threading
from collections import deque
from typing import Optional

from devicemodel.errors import ConfigError, error_report
from devicemodel.net.netdev import NET_BUFSIZE, HostPort, Netdev

LENGTH_BYTES = 4
SEND_QUEUE_FRAMES = 64
# close() waits this long for the queued frames to go out (a peer that reads nothing
# must not hold pyhv's exit)
CLOSE_FLUSH_SECONDS = 2.0
RECV_CHUNK = 65536


class FramingError(Exception):
    """The peer's stream does not follow the framing."""


def frame_record(frame: bytes) -> bytes:
    """A frame as it goes on the stream."""
    return len(frame).to_bytes(LENGTH_BYTES, "big") + frame


class FrameReader:
    """The read side of the framing: bytes in, whole frames out (empty ones skipped)."""

    def __init__(self):
        self.buffer = bytearray()

    def feed(self, data: bytes):
        """The frames completed by ``data``, in order; FramingError where the stream breaks."""
        self.buffer += data
        while len(self.buffer) >= LENGTH_BYTES:
            length = int.from_bytes(self.buffer[:LENGTH_BYTES], "big")
            if length > NET_BUFSIZE:
                raise FramingError(f"the peer sent a frame of {length} bytes, more than {NET_BUFSIZE}")
            end = LENGTH_BYTES + length
            if len(self.buffer) < end:
                return
            frame = bytes(self.buffer[LENGTH_BYTES:end])
            del self.buffer[:end]
            if frame:
                yield frame


def _bind_error(address: tuple[str, int], e: OSError) -> ConfigError:
    return ConfigError(f"can't bind ip={address[0]} to socket: {e.strerror or e}")


class StreamNetdev(Netdev):
    kind = "socket"

    def __init__(self, ident: str, address: HostPort, listen: bool):
        super().__init__(ident)
        self.address = address
        self.listening = listen
        self.receiver = None
        self._state = threading.Condition()
        self._conn: Optional[socket.socket] = None
        self._peer = ""
        self._out: deque[bytes] = deque()
        self._sending = False               # the writer has a frame out of the queue
        self._stalled = False
        self._closed = False
        self._listener: Optional[socket.socket] = None
        target = address.sockaddr()
        if listen:
            self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                self._listener.bind(target)
                self._listener.listen(1)
            except OSError as e:
                self._listener.close()
                raise _bind_error(target, e) from None
        else:
            try:
                self._connected(socket.create_connection(target))
            except OSError as e:
                raise ConfigError(f"can't connect socket: {e.strerror or e}") from None

    def info(self) -> str:
        with self._state:
            if self._conn is None:
                return ""
            return f"socket: connection from {self._peer}" if self.listening else f"socket: connect to {self.address}"

    def _connected(self, conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        host, port = conn.getpeername()[:2]
        with self._state:
            self._conn, self._peer = conn, f"{host}:{port}"
            self._state.notify_all()

    def _hang_up(self, conn: socket.socket) -> None:
        with self._state:
            if self._conn is not conn:
                return
            self._conn = None
            self._out.clear()
            stalled, self._stalled = self._stalled, False
        try:
            conn.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        conn.close()
        if stalled:
            self.receiver.writable()

    # --- frames from the NIC ------------------------------------------------------

    def can_send(self) -> bool:
        with self._state:
            if self._conn is None or len(self._out) < SEND_QUEUE_FRAMES:
                return True
            self._stalled = True
            return False

    def send(self, frame: bytes) -> None:
        with self._state:
            if self._conn is None:
                return                      # nobody there: dropped, as QEMU does
            self._out.append(frame)
            self._state.notify_all()

    def _write_loop(self) -> None:
        while True:
            with self._state:
                while not self._out and not self._closed:
                    self._state.wait()
                if not self._out:
                    return                  # closed, and everything sent
                frame, conn = self._out.popleft(), self._conn
                self._sending = True
                wake = self._stalled and len(self._out) < SEND_QUEUE_FRAMES
                if wake:
                    self._stalled = False
            try:
                conn.sendall(frame_record(frame))
            except OSError:
                self._hang_up(conn)
            with self._state:
                self._sending = False
                self._state.notify_all()
            if wake:
                self.receiver.writable()

    # --- frames from the peer -----------------------------------------------------

    def start(self, receiver) -> None:
        self.receiver = receiver
        for loop, name in ((self._read_loop, "rx"), (self._write_loop, "tx")):
            threading.Thread(target=loop, name=f"netdev-{self.id}-{name}", daemon=True).start()

    def _read_loop(self) -> None:
        while not self._closed:
            conn = self._conn
            if conn is None:
                if self._listener is None:
                    return                  # a client whose server went away stays disconnected
                try:
                    accepted, _ = self._listener.accept()
                except OSError:
                    return
                self._connected(accepted)
                continue
            self._read_frames(conn)
            self._hang_up(conn)

    def _read_frames(self, conn: socket.socket) -> None:
        reader = FrameReader()
        while True:
            try:
                data = conn.recv(RECV_CHUNK)
            except OSError:
                return
            if not data:
                return
            try:
                for frame in reader.feed(data):
                    self.receiver.deliver(frame)
            except FramingError as e:
                error_report(f"netdev {self.id}: {e}; hanging up")
                return

    def close(self) -> None:
        with self._state:
            self._closed = True
            self._state.notify_all()
            self._state.wait_for(lambda: not (self._out or self._sending) or self._conn is None,
                                 CLOSE_FLUSH_SECONDS)
            conn = self._conn
        for sock in (conn, self._listener):
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()


class DatagramNetdev(Netdev):
    kind = "socket"

    def __init__(self, ident: str, remote: HostPort, local: HostPort):
        super().__init__(ident)
        self.remote = remote
        self._target = remote.sockaddr()
        self._closed = False
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        local_address = local.sockaddr()
        try:
            self.sock.bind(local_address)
        except OSError as e:
            self.sock.close()
            raise _bind_error(local_address, e) from None

    def info(self) -> str:
        return f"socket: udp={self.remote}"

    def send(self, frame: bytes) -> None:
        try:
            self.sock.sendto(frame, socket.MSG_DONTWAIT, self._target)
        except OSError:
            pass                            # a full socket buffer or an unreachable peer: dropped

    def start(self, receiver) -> None:
        threading.Thread(target=self._read_loop, args=(receiver,), name=f"netdev-{self.id}-rx",
                         daemon=True).start()

    def _read_loop(self, receiver) -> None:
        while not self._closed:
            try:
                frame = self.sock.recv(NET_BUFSIZE)
            except OSError:
                return
            if frame:
                receiver.deliver(frame)

    def close(self) -> None:
        self._closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
