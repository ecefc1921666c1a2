"""VIRTIO 1.x devices (OASIS VIRTIO specification): split virtqueues in guest memory,
transport-independent device cores (block, entropy, console, memory balloon) and the
virtio-mmio and virtio-pci transports."""
