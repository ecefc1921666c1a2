"""Random guest behaviour through the virtio-pci transport: random ring contents, queue
addresses and sizes (the rings of test_virtqueue.py's fuzz test), random writes to the
common configuration and through the PCI_CFG window, MSI-X on or off. The host never
raises, touches nothing outside guest RAM, and the device either works or ends needing
a reset -- which it says with a configuration interrupt -- and a reset brings it back."""

import struct

from hypothesis import HealthCheck, event, given, settings, strategies as st

import virtio_driver as vd
from devicemodel.virtio.balloon import VirtioBalloon
from devicemodel.virtio.pci import NO_VECTOR, VirtioPci
from devicemodel.virtio.spec import (F_EVENT_IDX, F_INDIRECT_DESC, F_VERSION_1, STATUS_DEVICE_NEEDS_RESET,
                                     STATUS_DRIVER_OK, bit)
from test_virtqueue import QUEUES, RAM, RANDOM_LAYOUT, RINGS, SIZES, desc, make_device, well_formed

SLOT = 3
MSI_ADDRESS = 0xFEE00000
COMMON_WRITE = st.tuples(st.sampled_from([0x00, 0x04, 0x08, 0x0C, 0x10, 0x12, 0x15, 0x16, 0x18, 0x1A, 0x1C,
                                          0x1E, 0x20, 0x24, 0x28, 0x30, 0x3A, 0x3C, 0x7FF]),
                         st.sampled_from([1, 2, 4]), st.integers(0, 0xFFFFFFFF))
WINDOW_WRITE = st.tuples(st.integers(0, 0xFFFFFFFF), st.sampled_from([0, 1, 2, 3, 4, 8]),
                         st.integers(0, 0xFF), st.integers(0, 0xFFFFFFFF))


def _device(kind, memory, tmp_path_factory):
    if kind == "balloon":
        return VirtioBalloon(memory, RAM)
    return make_device(kind, memory, tmp_path_factory)


def _quietly(action):
    try:
        action()
    except Exception:      # the guest's own writes may miss RAM: that is the guest's business
        pass


@settings(max_examples=200, deadline=3000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["blk", "rng", "serial", "balloon"]), msix=st.booleans(),
       features=st.sampled_from([bit(F_VERSION_1), bit(F_VERSION_1) | bit(F_INDIRECT_DESC) | bit(F_EVENT_IDX)]),
       queue=QUEUES, size=SIZES, rings=RINGS, layout=st.one_of(well_formed(), well_formed(), RANDOM_LAYOUT),
       garbage=st.binary(max_size=512), vector=st.sampled_from([0, 1, 2, NO_VECTOR, 0x8000]),
       common_writes=st.lists(COMMON_WRITE, max_size=4), window_writes=st.lists(WINDOW_WRITE, max_size=2),
       other_notifies=st.lists(QUEUES, max_size=3))
def test_random_guests_never_hurt_the_host(tmp_path_factory, kind, msix, features, queue, size, rings, layout,
                                           garbage, vector, common_writes, window_writes, other_notifies):
    descriptors, heads, avail_idx = layout
    memory = vd.make_memory(RAM)
    written = []
    memory.on_write = lambda gpa, length: written.append((gpa, length))
    device = _device(kind, memory, tmp_path_factory)
    board = vd.PciBoard()
    pci = board.plug(VirtioPci(device, vectors=2, class_code=0x00FF, name=f"virtio-{kind}-pci"), SLOT)
    driver = vd.PciDriver(board, SLOT)
    told = []
    signal = pci.config_interrupt
    pci.config_interrupt = lambda: (told.append(True), signal())
    if msix:
        driver.msix_entry(0, MSI_ADDRESS, 0x41)
        driver.msix_entry(1, MSI_ADDRESS, 0x42)
        driver.enable_msix()
    driver.negotiate(features)
    driver.write(0x10, 0, 2)                                     # configuration changes: vector 0
    desc_addr, avail_addr, used_addr = rings
    _quietly(lambda: memory.write(0x10000, garbage))
    _quietly(lambda: memory.write(avail_addr, struct.pack("<HH", 0, avail_idx)))
    for i, entry in enumerate(descriptors):
        _quietly(lambda: desc(memory, desc_addr, i, *entry))
    for i, head in enumerate(heads):
        _quietly(lambda: memory.write_int(avail_addr + 4 + 2 * i, 2, head))
    driver.write(0x16, queue, 2)
    driver.write(0x18, size, 2)
    driver.write(0x1A, vector, 2)
    for offset, value in zip((0x20, 0x28, 0x30), rings):
        driver.write(offset, value & 0xFFFFFFFF)
        driver.write(offset + 4, value >> 32)
    driver.write(0x1C, 1, 2)
    driver.driver_ok()
    for offset, width, value in common_writes:
        driver.write(offset, value & ((1 << (8 * width)) - 1), width)
    for offset, length, bar, value in window_writes:
        driver.set_config(0x84 + 4, bar, 1)
        driver.set_config(0x84 + 8, offset)
        driver.set_config(0x84 + 12, length)
        driver.set_config(0x84 + 16, value)
        driver.config(0x84 + 16)
    written.clear()
    for index in [queue, *other_notifies]:
        driver.notify(index)
    status = driver.read(0x14, 1)
    event(f"{kind}: {'needs reset' if device.broken else 'fine'}")
    assert all(0 <= gpa and gpa + length <= RAM for gpa, length in written)
    if device.broken:
        assert status & STATUS_DEVICE_NEEDS_RESET
        assert told or not status & STATUS_DRIVER_OK              # the driver heard of it
    if msix and told and pci.config_vector == 0 and pci.msix.enabled:
        assert (MSI_ADDRESS, 0x41) in board.messages
    driver.write(0x14, 0, 1)                                     # a reset always brings the device back
    assert driver.read(0x14, 1) == 0 and not device.broken and driver.read(0x10, 2) == NO_VECTOR
    if kind == "blk":
        device.drive.close()
