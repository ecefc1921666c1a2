"""Every instruction form against the host processor, one test per instruction group."""

import pytest

from differential.forms import FAMILIES
from differential.harness import groups, in_group

GROUPS = [(family, group) for family, forms in FAMILIES.items() for group in groups(forms)]


@pytest.mark.parametrize("family, group", GROUPS, ids=[f"{f}/{g}" for f, g in GROUPS])
def test_group_agrees_with_host(differential, family, group):
    failures = differential.check(in_group(FAMILIES[family], group))
    assert not failures, "\n".join(failures)
