"""QMP, the QEMU Monitor Protocol: JSON commands, replies and events over a chardev."""
