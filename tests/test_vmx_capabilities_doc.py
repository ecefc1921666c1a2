"""docs/vmx-capabilities.md is generated from the implementation and must match it."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_capability_document_is_current():
    r = subprocess.run([sys.executable, str(REPO / "tools" / "vmx_capabilities.py"), "--check"],
                       cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
