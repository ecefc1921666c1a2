/*
 * A virtio-blk driver over virtio-mmio version 2, as small as it gets (VIRTIO 1.x
 * sections 4.2 and 5.2). It finds the block device among the eight virtio-mmio windows
 * of QEMU's microvm layout (0xfeb00000, 512 bytes apart), negotiates VIRTIO_F_VERSION_1
 * and VIRTIO_F_INDIRECT_DESC, sets up queue 0 with 8 entries, and then reads sector 0,
 * writes sector 1 and reads it back (through an indirect table), asks for the disk's ID,
 * flushes, and reads past the end of the disk -- printing what it sees, polling the used
 * ring and checking the interrupt status. It ends through isa-debug-exit.
 */
#include <stdint.h>

#include "debug_exit.h"
#include "serial.h"
#include "string.h"
#include "virtio_mmio.h"

#define F_INDIRECT_DESC     28
#define F_VERSION_1         32      /* bit 0 of the second feature word */

#define T_IN     0
#define T_OUT    1
#define T_FLUSH  4
#define T_GET_ID 8

#define QUEUE_SIZE 8
#define SECTOR 512

static struct desc ring_desc[QUEUE_SIZE] __attribute__((aligned(16)));
static struct {
    uint16_t flags, idx, ring[QUEUE_SIZE], used_event;
} avail __attribute__((aligned(2)));
static volatile struct {
    uint16_t flags, idx;
    struct { uint32_t id, len; } ring[QUEUE_SIZE];
    uint16_t avail_event;
} used __attribute__((aligned(4)));
static struct desc indirect[3] __attribute__((aligned(16)));

static struct req_header header;
static uint8_t data[SECTOR] __attribute__((aligned(16)));
static volatile uint8_t status_byte;

static uint16_t last_used;

static void set_desc(struct desc *d, void *addr, uint32_t len, uint16_t flags, uint16_t next)
{
    d->addr = (uintptr_t)addr;
    d->len = len;
    d->flags = flags;
    d->next = next;
}

/* Make the chain at HEAD available, notify, and wait for the device to return it. */
static uint32_t submit(uint16_t head)
{
    avail.ring[avail.idx % QUEUE_SIZE] = head;
    __asm__ volatile("" : : : "memory");
    avail.idx++;
    __asm__ volatile("mfence" : : : "memory");
    wr(REG_QUEUE_NOTIFY, 0);
    for (uint32_t spins = 0; used.idx == last_used; spins++) {
        if (spins == 200000000u) {
            printf("timeout waiting for the device\n");
            debug_exit(0x7f);
        }
        __asm__ volatile("pause");
    }
    uint32_t len = used.ring[last_used % QUEUE_SIZE].len;
    if (used.ring[last_used % QUEUE_SIZE].id != head)
        printf("used ring returned head %u, expected %u\n", (unsigned)used.ring[last_used % QUEUE_SIZE].id, head);
    last_used++;
    return len;
}

/* A request as three chained descriptors: header, data (DATA_LEN bytes), status. */
static int request(uint32_t type, uint32_t sector, uint32_t data_len, int device_writes_data)
{
    header.type = type;
    header.reserved = 0;
    header.sector = sector;
    status_byte = 0xff;
    set_desc(&ring_desc[0], &header, sizeof(header), DESC_F_NEXT, 1);
    if (data_len) {
        set_desc(&ring_desc[1], data, data_len, DESC_F_NEXT | (device_writes_data ? DESC_F_WRITE : 0), 2);
        set_desc(&ring_desc[2], (void *)&status_byte, 1, DESC_F_WRITE, 0);
    } else {
        set_desc(&ring_desc[1], (void *)&status_byte, 1, DESC_F_WRITE, 0);
    }
    submit(0);
    return status_byte;
}

/* The same request through one descriptor pointing to an indirect table. */
static int indirect_request(uint32_t type, uint32_t sector, int device_writes_data)
{
    header.type = type;
    header.reserved = 0;
    header.sector = sector;
    status_byte = 0xff;
    set_desc(&indirect[0], &header, sizeof(header), DESC_F_NEXT, 1);
    set_desc(&indirect[1], data, SECTOR, DESC_F_NEXT | (device_writes_data ? DESC_F_WRITE : 0), 2);
    set_desc(&indirect[2], (void *)&status_byte, 1, DESC_F_WRITE, 0);
    set_desc(&ring_desc[3], indirect, sizeof(indirect), DESC_F_INDIRECT, 0);
    submit(3);
    return status_byte;
}

static void print_bytes(const char *what, const uint8_t *p, int n)
{
    printf("%s:", what);
    for (int i = 0; i < n; i++)
        printf(" %02x", p[i]);
    printf("\n");
}

void kmain(void)
{
    serial_init();
    printf("virtio-blk test\n");
    int index = find_virtio_device(2);
    if (index < 0) {
        printf("no virtio-blk device found\n");
        debug_exit(0x7e);
    }
    printf("virtio-blk at transport %d (0x%08x), version %u, vendor 0x%08x\n",
           index, (unsigned)virtio_base, (unsigned)rd(REG_VERSION), (unsigned)rd(REG_VENDOR_ID));

    wr(REG_STATUS, 0);
    wr(REG_STATUS, STATUS_ACKNOWLEDGE);
    wr(REG_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
    wr(REG_DEVICE_FEATURES_SEL, 0);
    uint32_t low = rd(REG_DEVICE_FEATURES);
    wr(REG_DEVICE_FEATURES_SEL, 1);
    uint32_t high = rd(REG_DEVICE_FEATURES);
    printf("offers VERSION_1: %s, INDIRECT_DESC: %s\n", high & 1 ? "yes" : "no",
           low & (1u << F_INDIRECT_DESC) ? "yes" : "no");
    wr(REG_DRIVER_FEATURES_SEL, 0);
    wr(REG_DRIVER_FEATURES, low & (1u << F_INDIRECT_DESC));
    wr(REG_DRIVER_FEATURES_SEL, 1);
    wr(REG_DRIVER_FEATURES, 1);
    wr(REG_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK);
    printf("features accepted: %s\n", rd(REG_STATUS) & STATUS_FEATURES_OK ? "yes" : "no");

    uint32_t capacity = rd(REG_CONFIG);
    printf("capacity: %u sectors\n", (unsigned)capacity);
    wr(REG_QUEUE_SEL, 0);
    printf("queue 0 max size at least %d: %s\n", QUEUE_SIZE, rd(REG_QUEUE_NUM_MAX) >= QUEUE_SIZE ? "yes" : "no");
    wr(REG_QUEUE_NUM, QUEUE_SIZE);
    wr(REG_QUEUE_DESC, (uintptr_t)ring_desc);
    wr(REG_QUEUE_DESC + 4, 0);
    wr(REG_QUEUE_DRIVER, (uintptr_t)&avail);
    wr(REG_QUEUE_DRIVER + 4, 0);
    wr(REG_QUEUE_DEVICE, (uintptr_t)&used);
    wr(REG_QUEUE_DEVICE + 4, 0);
    wr(REG_QUEUE_READY, 1);
    wr(REG_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK);
    printf("queue ready: %u, status: 0x%02x\n", (unsigned)rd(REG_QUEUE_READY), (unsigned)rd(REG_STATUS));

    int status = request(T_IN, 0, SECTOR, 1);
    printf("read sector 0: status %d\n", status);
    print_bytes("sector 0", data, 16);
    uint32_t isr = rd(REG_INTERRUPT_STATUS);
    wr(REG_INTERRUPT_ACK, isr);
    printf("interrupt status after the read: 0x%x, after ack: 0x%x\n", (unsigned)isr,
           (unsigned)rd(REG_INTERRUPT_STATUS));

    for (int i = 0; i < SECTOR; i++)
        data[i] = (uint8_t)(i * 7 + 3);
    memcpy(data, "written by the pyhv virtio-blk test kernel", 42);
    printf("write sector 1: status %d\n", request(T_OUT, 1, SECTOR, 0));
    memset(data, 0, SECTOR);
    printf("indirect read of sector 1: status %d\n", indirect_request(T_IN, 1, 1));
    printf("read back: %s\n", memcmp(data, "written by the pyhv virtio-blk test kernel", 42) == 0 &&
           data[100] == (uint8_t)(100 * 7 + 3) ? "matches" : "DIFFERS");

    memset(data, 0, SECTOR);
    status = request(T_GET_ID, 0, 20, 1);
    printf("get id: status %d, id \"%s\"\n", status, (const char *)data);
    printf("flush: status %d\n", request(T_FLUSH, 0, 0, 0));
    printf("read past the end: status %d\n", request(T_IN, capacity, SECTOR, 1));
    printf("virtio-blk test done\n");
    debug_exit(0x14);
}
