/*
 * VIRTIO 1.x for the test kernels: the virtio-mmio register file (VIRTIO 1.2 section
 * 4.2.2) as QEMU's microvm machine lays the transports out, the device status bits,
 * the split virtqueue's descriptor, and virtio-blk's request header.
 */
#ifndef PYHV_FW_VIRTIO_H
#define PYHV_FW_VIRTIO_H
#include <stdint.h>

#define MMIO_BASE       0xfeb00000u
#define MMIO_WINDOW     0x200u
#define MMIO_WINDOWS    8

#define REG_MAGIC           0x000
#define REG_VERSION         0x004
#define REG_DEVICE_ID       0x008
#define REG_VENDOR_ID       0x00c
#define REG_DEVICE_FEATURES 0x010
#define REG_DEVICE_FEATURES_SEL 0x014
#define REG_DRIVER_FEATURES 0x020
#define REG_DRIVER_FEATURES_SEL 0x024
#define REG_QUEUE_SEL       0x030
#define REG_QUEUE_NUM_MAX   0x034
#define REG_QUEUE_NUM       0x038
#define REG_QUEUE_READY     0x044
#define REG_QUEUE_NOTIFY    0x050
#define REG_INTERRUPT_STATUS 0x060
#define REG_INTERRUPT_ACK   0x064
#define REG_STATUS          0x070
#define REG_QUEUE_DESC      0x080
#define REG_QUEUE_DRIVER    0x090
#define REG_QUEUE_DEVICE    0x0a0
#define REG_CONFIG          0x100

#define STATUS_ACKNOWLEDGE  1
#define STATUS_DRIVER       2
#define STATUS_DRIVER_OK    4
#define STATUS_FEATURES_OK  8

#define DESC_F_NEXT     1
#define DESC_F_WRITE    2
#define DESC_F_INDIRECT 4

struct desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};

struct req_header {          /* virtio-blk */
    uint32_t type;
    uint32_t reserved;
    uint64_t sector;
};

#endif
