"""Shared pytest configuration for pyhv."""

import sys
from pathlib import Path

import pytest

_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)  # helper modules: `import guests`

import guests  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: boots a real guest or runs for a long time")
    config.addinivalue_line(
        "markers", "qemu: runs qemu-system-x86_64 (apt-get installs qemu-system-x86 if missing)"
    )


@pytest.fixture(scope="session")
def firmware_dir(tmp_path_factory):
    """Directory holding every firmware/ kernel as <name>.elf, built once per session."""
    return guests.build_firmware(tmp_path_factory.mktemp("firmware"))


@pytest.fixture(scope="session")
def qemu():
    """Path of qemu-system-x86_64 (installed on demand)."""
    return guests.ensure_qemu()


@pytest.fixture
def kernel(tmp_path):
    """A minimal Multiboot kernel file (tests/test_multiboot_loader.py's simple_kernel)."""
    from test_multiboot_loader import simple_kernel
    path = tmp_path / "kernel.elf"
    path.write_bytes(simple_kernel())
    return str(path)


@pytest.fixture
def no_vm(monkeypatch):
    """Bad input must be refused before any VM is created."""
    import devicemodel.machine as machine_module
    monkeypatch.setattr(machine_module, "open_kvm", lambda: pytest.fail("a VM was created"))
