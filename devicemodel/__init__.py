"""pyhv's device model: the QEMU-like userspace part of a VM (machine, devices, loaders, CLI)."""

__version__ = "0.1.0"
