"""How a monitor meets its user.

* On a terminal (``-monitor stdio``, or ``mon:stdio`` once C-a c gives the monitor the
  focus): prompt_toolkit, with completion of commands and arguments (Tab) and history
  (up/down, C-r).
* Everywhere else (sockets, pipes, a pty): plain lines. On each new connection the
  banner and the prompt; each line runs one command; output lines end in CR LF, as
  QEMU's monitor writes them.
"""

from __future__ import annotations

import sys
import threading

from devicemodel.chardev import StdioChardev
from devicemodel.chardev_mux import MuxPort
from devicemodel.monitor.hmp import Monitor

PROMPT = "(pyhv) "


def banner() -> str:
    from devicemodel.cli import version_text
    version = version_text().splitlines()[0].replace("pyhv version ", "")
    return f"pyhv {version} monitor - type 'help' for more information"


def start_monitor(machine, chardev) -> None:
    """Run a monitor on ``chardev`` (a backend or a multiplexer port)."""
    stdio = chardev.mux.backend if isinstance(chardev, MuxPort) else chardev
    if isinstance(stdio, StdioChardev) and stdio.is_terminal:
        TerminalMonitor(machine, chardev).start()
    else:
        LineMonitor(machine, chardev).start()


def _crlf(text: str) -> bytes:
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8", "replace")


class LineMonitor:
    """A monitor reading lines from a chardev."""

    def __init__(self, machine, chardev):
        self.chardev = chardev
        self.monitor = Monitor(machine, lambda text: chardev.write(_crlf(text)))
        self.machine = machine
        self._pending = bytearray()
        self._last_was_cr = False

    def start(self) -> None:
        if isinstance(self.chardev, MuxPort):
            self.chardev.focus_in = self._greet
            if self.chardev.has_focus:
                self._greet()
            self.chardev.start_input(self._receive, quit=lambda: self.machine.request_exit(0))
        else:
            self.chardev.start_input(self._receive, quit=lambda: self.machine.request_exit(0),
                                     opened=self._greet)

    def _greet(self) -> None:
        self._pending.clear()
        self.chardev.write(_crlf(banner() + "\n" + PROMPT))

    def _receive(self, data: bytes) -> None:
        for byte in data:
            if byte in (0x0D, 0x0A):
                if byte == 0x0A and self._last_was_cr:
                    self._last_was_cr = False
                    continue
                self._last_was_cr = byte == 0x0D
                line = self._pending.decode("utf-8", "replace")
                self._pending.clear()
                self.monitor.handle_line(line)
                if not self.machine.runstate.stop_requested:
                    self.chardev.write(PROMPT.encode())
                continue
            self._last_was_cr = False
            if byte in (0x08, 0x7F):
                del self._pending[-1:]
            elif byte >= 0x20 or byte == 0x09:
                self._pending.append(byte)


class TerminalMonitor:
    """prompt_toolkit on the terminal: its own input for ``-monitor stdio``, or fed
    by the multiplexer for ``mon:stdio`` (whose terminal is already raw)."""

    def __init__(self, machine, chardev):
        self.machine = machine
        self.chardev = chardev
        # the multiplexer's terminal is raw (CR LF by hand); -monitor stdio's is cooked
        encode = _crlf if isinstance(chardev, MuxPort) else lambda text: text.encode("utf-8", "replace")
        self._encode = encode
        self.monitor = Monitor(machine, lambda text: chardev.write(encode(text)))
        self._pipe = None
        self._started = False

    def start(self) -> None:
        if isinstance(self.chardev, MuxPort):
            from prompt_toolkit.input import create_pipe_input
            self._pipe = create_pipe_input()
            self.chardev.focus_in = self._focus_in
            self.chardev.start_input(self._pipe.send_bytes, quit=lambda: self.machine.request_exit(0))
            if self.chardev.has_focus:
                self._focus_in()
        else:
            self._run_thread()

    def _focus_in(self) -> None:
        if not self._started:
            self._run_thread()
        else:
            self._pipe.send_bytes(b"\x0c")     # C-l: draw the prompt again

    def _run_thread(self) -> None:
        self._started = True
        threading.Thread(target=self._loop, name="monitor", daemon=True).start()

    def _session(self):
        from prompt_toolkit import PromptSession
        from prompt_toolkit.completion import Completer, Completion
        from prompt_toolkit.history import InMemoryHistory
        from prompt_toolkit.output import create_output

        monitor = self.monitor

        class MonitorCompleter(Completer):
            def get_completions(self, document, complete_event):
                word = document.text_before_cursor.split(" ")[-1]
                last = word.rpartition("-")[2] if document.text_before_cursor.startswith("sendkey ") else word
                for choice in monitor.complete(document.text_before_cursor):
                    yield Completion(choice[len(word) - len(last):] if last != word else choice,
                                     start_position=-len(last))
        kwargs = {}
        if self._pipe is not None:
            kwargs = {"input": self._pipe, "output": create_output(stdout=sys.stdout)}
        return PromptSession(PROMPT, completer=MonitorCompleter(), history=InMemoryHistory(),
                             complete_while_typing=False, **kwargs)

    def _loop(self) -> None:
        session = self._session()
        self.chardev.write(self._encode(banner() + "\n"))
        while not self.machine.runstate.stop_requested:
            try:
                line = session.prompt()
            except KeyboardInterrupt:
                self.machine.stop_on_signal(2)
                return
            except EOFError:
                return
            self.monitor.handle_line(line)
