"""Disk images (QEMU's block layer, in miniature): raw and qcow2 images behind one
``BlockImage`` interface, opened from ``-drive`` options."""
