/*
 * A virtio-net driver over virtio-mmio version 2, as small as it gets (VIRTIO 1.2
 * sections 4.2 and 5.1). It finds the network device among the eight virtio-mmio
 * windows of QEMU's microvm layout, accepts VIRTIO_F_VERSION_1, VIRTIO_NET_F_MAC,
 * VIRTIO_NET_F_STATUS and VIRTIO_NET_F_MRG_RXBUF, reads its MAC address and link
 * state, gives the receive queue eight 128-byte buffers and then:
 *   - sends a broadcast frame (EtherType 0x88b5) saying hello, header and frame in two
 *     descriptors;
 *   - waits for a 300-byte frame from the peer on the other side of the backend, which
 *     arrives merged over three buffers, and checks its bytes;
 *   - sends the peer a frame saying what it received.
 * It prints what it sees, polling the used rings, and ends through isa-debug-exit.
 */
#include <stdint.h>

#include "debug_exit.h"
#include "format.h"
#include "serial.h"
#include "string.h"
#include "virtio_mmio.h"

#define F_MAC           5
#define F_MRG_RXBUF     15
#define F_STATUS        16
#define F_VERSION_1     32      /* bit 0 of the second feature word */

#define RX 0
#define TX 1
#define QUEUE_SIZE 8
#define RX_BUFFER 128
#define HDR_LEN 12
#define ETHERTYPE 0x88b5        /* IEEE 802 local experimental */
#define PEER_FRAME_LEN 300

struct queue {
    struct desc desc[QUEUE_SIZE] __attribute__((aligned(16)));
    struct {
        uint16_t flags, idx, ring[QUEUE_SIZE], used_event;
    } avail __attribute__((aligned(2)));
    volatile struct {
        uint16_t flags, idx;
        struct { uint32_t id, len; } ring[QUEUE_SIZE];
        uint16_t avail_event;
    } used __attribute__((aligned(4)));
    uint16_t last_used;
};

static struct queue queues[2];
static uint8_t rx_buffers[QUEUE_SIZE][RX_BUFFER];
static uint8_t tx_header[HDR_LEN];
static uint8_t tx_frame[128];
static uint8_t received[QUEUE_SIZE * RX_BUFFER];
static uint8_t mac[6];
static const uint8_t peer_mac[6] = { 0x02, 0, 0, 0, 0, 0x01 };

static uint8_t rd8(uint32_t reg)
{
    return *(volatile uint8_t *)(virtio_base + reg);
}

static void setup_queue(int index)
{
    struct queue *q = &queues[index];
    wr(REG_QUEUE_SEL, index);
    if (rd(REG_QUEUE_NUM_MAX) < QUEUE_SIZE) {
        printf("queue %d is too small\n", index);
        debug_exit(0x7d);
    }
    wr(REG_QUEUE_NUM, QUEUE_SIZE);
    wr(REG_QUEUE_DESC, (uintptr_t)q->desc);
    wr(REG_QUEUE_DESC + 4, 0);
    wr(REG_QUEUE_DRIVER, (uintptr_t)&q->avail);
    wr(REG_QUEUE_DRIVER + 4, 0);
    wr(REG_QUEUE_DEVICE, (uintptr_t)&q->used);
    wr(REG_QUEUE_DEVICE + 4, 0);
    wr(REG_QUEUE_READY, 1);
}

static void set_desc(struct desc *d, void *addr, uint32_t len, uint16_t flags, uint16_t next)
{
    d->addr = (uintptr_t)addr;
    d->len = len;
    d->flags = flags;
    d->next = next;
}

static void publish(struct queue *q, uint16_t head)
{
    q->avail.ring[q->avail.idx % QUEUE_SIZE] = head;
    __asm__ volatile("" : : : "memory");
    q->avail.idx++;
    __asm__ volatile("mfence" : : : "memory");
}

/* Wait until the device has returned COUNT more chains of queue Q. */
static void wait_used(struct queue *q, uint16_t count)
{
    for (uint32_t spins = 0; (uint16_t)(q->used.idx - q->last_used) < count; spins++) {
        if (spins == 400000000u) {
            printf("timeout waiting for the device\n");
            debug_exit(0x7f);
        }
        __asm__ volatile("pause");
    }
}

static void send(const uint8_t *dst, const char *text)
{
    struct queue *q = &queues[TX];
    memset(tx_frame, 0, sizeof(tx_frame));
    memcpy(tx_frame, dst, 6);
    memcpy(tx_frame + 6, mac, 6);
    tx_frame[12] = ETHERTYPE >> 8;
    tx_frame[13] = ETHERTYPE & 0xff;
    memcpy(tx_frame + 14, text, strlen(text));
    uint32_t len = 14 + strlen(text) < 60 ? 60 : 14 + strlen(text);
    set_desc(&q->desc[0], tx_header, HDR_LEN, DESC_F_NEXT, 1);
    set_desc(&q->desc[1], tx_frame, len, 0, 0);
    publish(q, 0);
    wr(REG_QUEUE_NOTIFY, TX);
    wait_used(q, 1);
    printf("sent %u bytes, used length %u\n", (unsigned)len, (unsigned)q->used.ring[q->last_used % QUEUE_SIZE].len);
    q->last_used++;
}

/* Receive one frame; the number of buffers it came in. */
static uint16_t receive(uint32_t *total_out)
{
    struct queue *q = &queues[RX];
    wait_used(q, 1);
    uint16_t first = q->used.ring[q->last_used % QUEUE_SIZE].id;
    uint16_t buffers = rx_buffers[first][10] | rx_buffers[first][11] << 8;     /* num_buffers */
    wait_used(q, buffers);
    uint32_t total = 0;
    for (uint16_t i = 0; i < buffers; i++) {
        uint16_t id = q->used.ring[q->last_used % QUEUE_SIZE].id;
        uint32_t len = q->used.ring[q->last_used % QUEUE_SIZE].len;
        if (total + len <= sizeof(received))
            memcpy(received + total, rx_buffers[id], len);
        total += len;
        q->last_used++;
    }
    printf("received %u bytes in %u buffers (num_buffers %u)\n", (unsigned)total, (unsigned)buffers,
           (unsigned)buffers);
    const uint8_t *frame = received + HDR_LEN;
    printf("header flags %u gso_type %u\n", received[0], received[1]);
    printf("to %02x:%02x:%02x:%02x:%02x:%02x from %02x:%02x:%02x:%02x:%02x:%02x type 0x%02x%02x\n",
           frame[0], frame[1], frame[2], frame[3], frame[4], frame[5],
           frame[6], frame[7], frame[8], frame[9], frame[10], frame[11], frame[12], frame[13]);
    printf("says \"%s\"\n", (const char *)frame + 14);
    int ok = total == HDR_LEN + PEER_FRAME_LEN;
    for (uint32_t i = 40; ok && i < PEER_FRAME_LEN; i++)
        ok = frame[i] == (uint8_t)(i * 7 + 1);
    printf("frame bytes: %s\n", ok ? "match" : "DIFFER");
    *total_out = total;
    return buffers;
}

void kmain(void)
{
    serial_init();
    printf("virtio-net test\n");
    int index = find_virtio_device(1);
    if (index < 0) {
        printf("no virtio-net device found\n");
        debug_exit(0x7e);
    }
    printf("virtio-net at transport %d (0x%08x), version %u\n", index, (unsigned)virtio_base, (unsigned)rd(REG_VERSION));

    wr(REG_STATUS, 0);
    wr(REG_STATUS, STATUS_ACKNOWLEDGE);
    wr(REG_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
    wr(REG_DEVICE_FEATURES_SEL, 0);
    uint32_t low = rd(REG_DEVICE_FEATURES);
    wr(REG_DEVICE_FEATURES_SEL, 1);
    uint32_t high = rd(REG_DEVICE_FEATURES);
    uint32_t wanted = (1u << F_MAC) | (1u << F_STATUS) | (1u << F_MRG_RXBUF);
    printf("offers VERSION_1: %s, MAC: %s, STATUS: %s, MRG_RXBUF: %s\n", high & 1 ? "yes" : "no",
           low & (1u << F_MAC) ? "yes" : "no", low & (1u << F_STATUS) ? "yes" : "no",
           low & (1u << F_MRG_RXBUF) ? "yes" : "no");
    wr(REG_DRIVER_FEATURES_SEL, 0);
    wr(REG_DRIVER_FEATURES, low & wanted);
    wr(REG_DRIVER_FEATURES_SEL, 1);
    wr(REG_DRIVER_FEATURES, 1);
    wr(REG_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK);
    printf("features accepted: %s\n", rd(REG_STATUS) & STATUS_FEATURES_OK ? "yes" : "no");

    for (int i = 0; i < 6; i++)
        mac[i] = rd8(REG_CONFIG + i);
    printf("mac %02x:%02x:%02x:%02x:%02x:%02x, link %s\n", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5],
           rd8(REG_CONFIG + 6) & 1 ? "up" : "down");

    setup_queue(RX);
    setup_queue(TX);
    for (uint16_t i = 0; i < QUEUE_SIZE; i++) {
        set_desc(&queues[RX].desc[i], rx_buffers[i], RX_BUFFER, DESC_F_WRITE, 0);
        publish(&queues[RX], i);
    }
    wr(REG_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK);
    wr(REG_QUEUE_NOTIFY, RX);
    printf("status: 0x%02x\n", (unsigned)rd(REG_STATUS));

    send((const uint8_t *)"\xff\xff\xff\xff\xff\xff", "hello from the pyhv virtio-net test kernel");
    uint32_t total;
    uint16_t buffers = receive(&total);
    uint32_t isr = rd(REG_INTERRUPT_STATUS);
    wr(REG_INTERRUPT_ACK, isr);
    printf("used-buffer interrupt: %s\n", isr & 1 ? "yes" : "no");
    char reply[48];
    ksnprintf(reply, sizeof(reply), "received %u bytes in %u buffers", (unsigned)total, (unsigned)buffers);
    send(peer_mac, reply);
    printf("virtio-net test done\n");
    debug_exit(0x15);
}
