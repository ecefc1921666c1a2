/*
 * The virtio-mmio transport for the test kernels: the transport in use, its registers,
 * and the search of QEMU microvm's transport windows for a device.
 */
#ifndef PYHV_FW_VIRTIO_MMIO_H
#define PYHV_FW_VIRTIO_MMIO_H
#include "virtio.h"

static uintptr_t virtio_base;   /* the transport the kernel drives */

static uint32_t rd(uint32_t reg)
{
    return *(volatile uint32_t *)(virtio_base + reg);
}

static void wr(uint32_t reg, uint32_t value)
{
    *(volatile uint32_t *)(virtio_base + reg) = value;
}

/* The index of the first transport with a device of `device_id` (virtio_base is left
 * on it), or -1. */
static int find_virtio_device(uint32_t device_id)
{
    for (int i = 0; i < MMIO_WINDOWS; i++) {
        virtio_base = MMIO_BASE + i * MMIO_WINDOW;
        if (rd(REG_MAGIC) == 0x74726976 && rd(REG_DEVICE_ID) == device_id)
            return i;
    }
    return -1;
}

#endif
