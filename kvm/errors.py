"""What a KVM ioctl would fail with: a request the hypervisor refuses (bad arguments, a
state that does not allow it), like the ioctl's -EINVAL, -ENXIO, ..."""


class KvmError(Exception):
    pass
