"""The differential session: one native runner and one emulated guest shared by every
test, and the coverage report at the end of the session (terminal and a file in the
pytest cache)."""

import pytest

from differential.harness import Differential

_session = {}


@pytest.fixture(scope="session")
def differential():
    if "diff" not in _session:
        _session["diff"] = Differential()
    return _session["diff"]


def pytest_terminal_summary(terminalreporter, config):
    diff = _session.get("diff")
    if diff is None or not diff.results:
        return
    report = diff.report()
    path = config.cache.mkdir("differential") / "coverage.txt"
    path.write_text(report + "\n")
    terminalreporter.section("differential coverage")
    terminalreporter.write_line(report.splitlines()[-1])
    terminalreporter.write_line(f"per-form report: {path}")
