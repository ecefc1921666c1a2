"""The whole differential run: every form (the ones no earlier test ran are run here),
each with at least a thousand cases, and not one case that differs from the host."""

from differential.forms import ALL

MIN_CASES = 1000


def test_every_form_agrees_with_the_host(differential):
    failures = differential.check(ALL)
    short = [f.name for f in ALL if differential.results[f.name].cases < MIN_CASES]
    assert not short, f"forms with fewer than {MIN_CASES} cases: {short}"
    assert not failures, f"{len(failures)} forms differ from the host:\n" + "\n".join(failures)
