"""Errors that reach the user as one line: ``pyhv: <message>``, exit status 1, no traceback."""

import sys


class PyhvError(Exception):
    """A problem caused by the user's input (options, files, configuration), not a bug."""


class ConfigError(PyhvError):
    """A bad command-line option or device/machine configuration."""


class LoaderError(PyhvError):
    """The kernel file cannot be loaded (missing, malformed, does not fit)."""


class AddressSpaceError(PyhvError):
    """A region does not fit in its address space or overlaps another region."""


def error_report(message: str) -> None:
    """Print ``pyhv: message`` on stderr (QEMU's error_report)."""
    print(f"pyhv: {message}", file=sys.stderr, flush=True)


def warn_report(message: str) -> None:
    """Print ``pyhv: warning: message`` on stderr (QEMU's warn_report)."""
    print(f"pyhv: warning: {message}", file=sys.stderr, flush=True)
