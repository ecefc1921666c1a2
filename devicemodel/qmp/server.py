"""A QMP server on a chardev, as QEMU's monitor/qmp.c runs one: on each connection the
greeting, then capabilities negotiation (``qmp_capabilities``), then commands and events.

Input is a stream of JSON objects; ``{"execute": NAME, "arguments": {...}, "id": ID}``
gets ``{"return": ..., "id": ID}`` or ``{"error": {"class": ..., "desc": ...}, "id": ID}``.
Malformed JSON, a request that is not an object, an unknown command and bad arguments
each get QEMU's error reply and the connection stays open. Events (STOP, RESUME, RESET,
SHUTDOWN, POWERDOWN) go to every connection that has negotiated.
"""

from __future__ import annotations

import json
import threading
import traceback

from devicemodel.errors import PyhvError
from devicemodel.qmp.commands import COMMANDS, QmpError, check_arguments, _version

REQUEST_KEYS = {"execute", "arguments", "id", "control", "exec-oob"}


def complete_value_end(text: str):
    """Where the first JSON value in ``text`` ends, or None while it is incomplete: an
    object or array ends where its brackets balance (outside strings), as QEMU's JSON
    streamer decides; anything else ends at the end of its line."""
    if text[0] not in "{[":
        newline = text.find("\n")
        return None if newline < 0 else newline + 1
    depth, in_string, escaped = 0, False, False
    for i, ch in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
            if depth == 0:
                return i + 1
    return None


class QmpServer:
    def __init__(self, machine, chardev):
        self.machine = machine
        self.chardev = chardev
        self._buffer = ""
        self._negotiated = False
        self._lock = threading.Lock()
        self._after_reply = []

    def start(self) -> None:
        self.machine.events.subscribe(self._event)
        self.chardev.start_input(self._receive, opened=self._greet)

    # -- output ---------------------------------------------------------------------------

    def _send(self, message: dict) -> None:
        with self._lock:
            self.chardev.write((json.dumps(message) + "\r\n").encode())

    def _event(self, record: dict) -> None:
        if self._negotiated:
            self._send(record)

    def _greet(self) -> None:
        self._buffer = ""
        self._negotiated = False
        self._send({"QMP": {"version": _version(self, {}), "capabilities": []}})

    # -- session state for the handlers ------------------------------------------------

    def negotiate(self, args: dict) -> dict:
        if self._negotiated:
            raise QmpError("Capabilities negotiation is already complete, command ignored",
                           "CommandNotFound")
        enable = args.get("enable", [])
        if enable:
            raise QmpError(f"Capability '{enable[0]}' not available")
        self._negotiated = True
        return {}

    def after_reply(self, action) -> None:
        self._after_reply.append(action)

    # -- input ----------------------------------------------------------------------------

    def _receive(self, data: bytes) -> None:
        self._buffer += data.decode("utf-8", "replace")
        while True:
            text, end = self._buffer.lstrip(), None
            if not text:
                self._buffer = ""
                return
            end = complete_value_end(text)
            if end is None:
                self._buffer = text
                return              # an object still arriving
            self._buffer = text[end:]
            try:
                request = json.loads(text[:end])
            except json.JSONDecodeError as e:
                self._reply_error(None, QmpError(f"JSON parse error, {e.msg}"))
                continue
            self._handle(request)

    def _reply_error(self, ident, error: QmpError) -> None:
        message = {"error": {"class": error.error_class, "desc": str(error)}}
        if ident is not None:
            message["id"] = ident
        self._send(message)

    def _handle(self, request) -> None:
        ident = request.get("id") if isinstance(request, dict) else None
        try:
            result = self._dispatch(request)
        except QmpError as e:
            self._reply_error(ident, e)
            return
        except PyhvError as e:
            self._reply_error(ident, QmpError(str(e)))
            return
        except Exception as e:       # a bug in pyhv: an error reply, the VM goes on
            traceback.print_exc()
            self._reply_error(ident, QmpError(f"internal error: {type(e).__name__}: {e}"))
            return
        message = {"return": result}
        if ident is not None:
            message["id"] = ident
        self._send(message)
        actions, self._after_reply = self._after_reply, []
        for action in actions:
            action()

    def _dispatch(self, request):
        if not isinstance(request, dict):
            raise QmpError("QMP input must be a JSON object")
        for key in request:
            if key not in REQUEST_KEYS:
                raise QmpError(f"QMP input member '{key}' is unexpected")
        name = request.get("execute", request.get("exec-oob"))
        if name is None:
            raise QmpError("QMP input lacks member 'execute'")
        if not isinstance(name, str):
            raise QmpError("QMP input member 'execute' must be a string")
        if "exec-oob" in request:
            raise QmpError("QMP input member 'exec-oob' is unexpected: out-of-band execution "
                           "was not enabled")
        arguments = request.get("arguments", {})
        if not isinstance(arguments, dict):
            raise QmpError("QMP input member 'arguments' must be an object")
        command = COMMANDS.get(name)
        if not self._negotiated and name != "qmp_capabilities":
            raise QmpError("Expecting capabilities negotiation with 'qmp_capabilities'",
                           "CommandNotFound")
        if command is None:
            raise QmpError(f"The command {name} has not been found", "CommandNotFound")
        check_arguments(command, arguments)
        return command.handler(self, arguments)
