"""ALU instructions against the host processor."""

import pytest

from differential.forms import alu
from differential.harness import groups, in_group


@pytest.mark.parametrize("group", groups(alu.FORMS))
def test_alu(differential, group):
    failures = differential.check(in_group(alu.FORMS, group))
    assert not failures, "\n".join(failures)
