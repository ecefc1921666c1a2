"""Numbers of the VIRTIO 1.x specification that transports and devices share."""

# Device status (2.1)
STATUS_ACKNOWLEDGE = 1
STATUS_DRIVER = 2
STATUS_DRIVER_OK = 4
STATUS_FEATURES_OK = 8
STATUS_DEVICE_NEEDS_RESET = 64
STATUS_FAILED = 128

# Reserved feature bits (6)
F_INDIRECT_DESC = 28
F_EVENT_IDX = 29
F_VERSION_1 = 32

# Device IDs (5)
ID_NET = 1
ID_BLOCK = 2
ID_CONSOLE = 3
ID_ENTROPY = 4
ID_BALLOON = 5

# Split virtqueue descriptor flags (2.7.5) and ring flags (2.7.6, 2.7.8)
DESC_F_NEXT = 1
DESC_F_WRITE = 2
DESC_F_INDIRECT = 4
AVAIL_F_NO_INTERRUPT = 1

MAX_QUEUE_SIZE = 32768       # 2.7: a split queue has at most 32768 entries
QEMU_QUEUE_MAX_SIZE = 1024   # QEMU's VIRTQUEUE_MAX_SIZE

# Interrupt status bits (4.2.2: virtio-mmio InterruptStatus; 4.1.4.5: the PCI ISR)
INTERRUPT_VRING = 1
INTERRUPT_CONFIG = 2


def bit(feature: int) -> int:
    return 1 << feature
