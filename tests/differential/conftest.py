"""The differential session: one native runner and one emulated guest shared by every
test (plus a helper process with its own, on a machine with more than one core; set
PYHV_DIFF_WORKERS to choose), and the coverage report at the end of the session, on
the terminal and in a file in the pytest cache."""

import os

import pytest

from differential.harness import Differential

_session = {}


def _workers() -> int:
    configured = os.environ.get("PYHV_DIFF_WORKERS")
    if configured is not None:
        return int(configured)
    return min(1, (os.cpu_count() or 1) - 1)


@pytest.fixture(scope="session")
def differential():
    diff = Differential(workers=_workers())
    _session["diff"] = diff
    yield diff
    diff.close()


def pytest_terminal_summary(terminalreporter, config):
    diff = _session.get("diff")
    if diff is None or not diff.results:
        return
    report = diff.report()
    terminalreporter.section("differential coverage")
    terminalreporter.write_line(report.splitlines()[-1])
    if getattr(config, "cache", None) is not None:   # the cache plugin may be disabled
        path = config.cache.mkdir("differential") / "coverage.txt"
        path.write_text(report + "\n")
        terminalreporter.write_line(f"per-form report: {path}")
