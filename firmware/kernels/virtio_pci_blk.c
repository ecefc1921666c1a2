/*
 * A virtio-blk driver over the modern virtio-pci transport (VIRTIO 1.2 sections 4.1 and
 * 5.2). It scans bus 0's configuration space for a virtio block function (1af4:1042),
 * walks its capability list to find the common, ISR, device and notification structures
 * in its memory BAR, and the PCI_CFG window and MSI-X. Then, with MSI-X messages to this
 * CPU's local APIC: reads sector 0, writes sector 1 with the vector masked (the message
 * waits in the PBA until it is unmasked), reads it back through an indirect table, keeps
 * three requests in flight at once, asks for the ID, flushes, zeroes and discards. It
 * resets the device and the queue (VIRTIO_F_RING_RESET), and does a last read with MSI-X
 * off, its interrupt through INTx (the I/O APIC pin of the function's interrupt line)
 * and the read-to-clear ISR. Prints what it sees and ends through isa-debug-exit.
 */
#include <stdint.h>

#include "apic.h"
#include "debug_exit.h"
#include "desc.h"
#include "io.h"
#include "pic.h"
#include "serial.h"
#include "string.h"
#include "trap.h"
#include "virtio.h"

#define VEC_MSIX_CONFIG 0x40
#define VEC_MSIX_QUEUE  0x41
#define VEC_INTX        0x42

#define PCI_VENDOR_VIRTIO 0x1af4
#define PCI_DEVICE_BLK    0x1042
#define PCI_COMMAND       0x04
#define PCI_CMD_MEMORY    0x02
#define PCI_CMD_MASTER    0x04
#define PCI_CAP_PTR       0x34
#define PCI_INT_LINE      0x3c
#define CAP_VENDOR        0x09
#define CAP_MSIX          0x11

#define CFG_COMMON 1
#define CFG_NOTIFY 2
#define CFG_ISR    3
#define CFG_DEVICE 4
#define CFG_PCI    5

/* common configuration */
#define C_DFSELECT 0x00
#define C_DF       0x04
#define C_GFSELECT 0x08
#define C_GF       0x0c
#define C_MSIX     0x10
#define C_NUMQ     0x12
#define C_STATUS   0x14
#define C_QSELECT  0x16
#define C_QSIZE    0x18
#define C_QMSIX    0x1a
#define C_QENABLE  0x1c
#define C_QNOFF    0x1e
#define C_QDESC    0x20
#define C_QDRIVER  0x28
#define C_QDEVICE  0x30
#define C_QRESET   0x3a

#define S_ACKNOWLEDGE 1
#define S_DRIVER      2
#define S_DRIVER_OK   4
#define S_FEATURES_OK 8

#define F_INDIRECT_DESC 28
#define F_EVENT_IDX     29
#define F_VERSION_1     32
#define F_RING_RESET    40
#define BLK_F_SEG_MAX   2
#define BLK_F_BLK_SIZE  6
#define BLK_F_FLUSH     9
#define BLK_F_DISCARD   13
#define BLK_F_WRITE_ZEROES 14

#define T_IN     0
#define T_OUT    1
#define T_FLUSH  4
#define T_GET_ID 8
#define T_DISCARD 11
#define T_WRITE_ZEROES 13

#define NO_VECTOR  0xffff
#define QUEUE_SIZE 16
#define SECTOR 512
#define IN_FLIGHT 3

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

static struct req_header headers[IN_FLIGHT];
static uint8_t buffers[IN_FLIGHT][SECTOR] __attribute__((aligned(16)));
static volatile uint8_t statuses[IN_FLIGHT];
static struct { uint64_t sector; uint32_t count, flags; } segment;
#define header headers[0]
#define data buffers[0]
#define status_byte statuses[0]

static uint32_t devfn;
static uintptr_t common, isr_reg, device_cfg, notify_base;
static uint32_t notify_multiplier, pci_cfg_cap, msix_cap;
static uintptr_t msix_table, msix_pba;
static uint16_t last_used;
static volatile uint32_t msix_config_count, msix_queue_count, intx_count;
static volatile uint32_t intx_isr;

/* --- PCI configuration mechanism #1 ------------------------------------------------ */

static uint32_t cfg_addr(uint32_t reg)
{
    return 0x80000000u | devfn << 8 | (reg & 0xfc);
}

static uint32_t cfg_read32(uint32_t reg)
{
    outl(0xcf8, cfg_addr(reg));
    return inl(0xcfc);
}

static uint8_t cfg_read8(uint32_t reg)
{
    outl(0xcf8, cfg_addr(reg));
    return inb(0xcfc + (reg & 3));
}

static uint16_t cfg_read16(uint32_t reg)
{
    outl(0xcf8, cfg_addr(reg));
    return inw(0xcfc + (reg & 2));
}

static void cfg_write32(uint32_t reg, uint32_t value)
{
    outl(0xcf8, cfg_addr(reg));
    outl(0xcfc, value);
}

static void cfg_write16(uint32_t reg, uint16_t value)
{
    outl(0xcf8, cfg_addr(reg));
    outw(0xcfc + (reg & 2), value);
}

static void cfg_write8(uint32_t reg, uint8_t value)
{
    outl(0xcf8, cfg_addr(reg));
    outb(0xcfc + (reg & 3), value);
}

/* --- MMIO ---------------------------------------------------------------------------- */

static uint8_t rd8(uintptr_t a) { return *(volatile uint8_t *)a; }
static uint16_t rd16(uintptr_t a) { return *(volatile uint16_t *)a; }
static uint32_t rd32(uintptr_t a) { return *(volatile uint32_t *)a; }
static void wr8(uintptr_t a, uint8_t v) { *(volatile uint8_t *)a = v; }
static void wr16(uintptr_t a, uint16_t v) { *(volatile uint16_t *)a = v; }
static void wr32(uintptr_t a, uint32_t v) { *(volatile uint32_t *)a = v; }

static uintptr_t bar_address(int bar)
{
    uint32_t low = cfg_read32(0x10 + 4 * bar);
    if ((low & 0x6) == 0x4 && cfg_read32(0x14 + 4 * bar) != 0) {
        printf("BAR %d is above 4 GiB\n", bar);
        debug_exit(0x7d);
    }
    return low & ~0xfu;
}

static int find_device(void)
{
    for (uint32_t slot = 0; slot < 32; slot++) {
        devfn = slot << 3;
        uint32_t id = cfg_read32(0);
        if ((id & 0xffff) == PCI_VENDOR_VIRTIO && id >> 16 == PCI_DEVICE_BLK)
            return (int)slot;
    }
    return -1;
}

static void walk_capabilities(void)
{
    for (uint32_t at = cfg_read8(PCI_CAP_PTR); at; at = cfg_read8(at + 1)) {
        uint8_t id = cfg_read8(at);
        if (id == CAP_MSIX) {
            msix_cap = at;
            uint32_t table = cfg_read32(at + 4), pba = cfg_read32(at + 8);
            printf("cap 0x%02x: MSI-X, %u vectors, table in BAR %u at 0x%x, PBA in BAR %u at 0x%x\n", at,
                   (cfg_read16(at + 2) & 0x7ff) + 1, table & 7, table & ~7u, pba & 7, pba & ~7u);
            msix_table = bar_address(table & 7) + (table & ~7u);
            msix_pba = bar_address(pba & 7) + (pba & ~7u);
            continue;
        }
        if (id != CAP_VENDOR) {
            printf("cap 0x%02x: id 0x%02x\n", at, id);
            continue;
        }
        uint8_t type = cfg_read8(at + 3), bar = cfg_read8(at + 4);
        uint32_t offset = cfg_read32(at + 8), length = cfg_read32(at + 12);
        printf("cap 0x%02x: virtio type %u, length %u, BAR %u, offset 0x%x, size 0x%x\n", at, type,
               cfg_read8(at + 2), bar, offset, length);
        uintptr_t where = type != CFG_PCI ? bar_address(bar) + offset : 0;
        if (type == CFG_COMMON)
            common = where;
        else if (type == CFG_ISR)
            isr_reg = where;
        else if (type == CFG_DEVICE)
            device_cfg = where;
        else if (type == CFG_NOTIFY) {
            notify_base = where;
            notify_multiplier = cfg_read32(at + 16);
            printf("notify_off_multiplier: %u\n", notify_multiplier);
        } else if (type == CFG_PCI)
            pci_cfg_cap = at;
    }
}

/* A BAR read through the PCI_CFG capability alone. */
static uint32_t pci_cfg_read(uint32_t offset, uint32_t length)
{
    cfg_write8(pci_cfg_cap + 4, 4);
    cfg_write32(pci_cfg_cap + 8, offset);
    cfg_write32(pci_cfg_cap + 12, length);
    return cfg_read32(pci_cfg_cap + 16) & (length == 4 ? 0xffffffffu : (1u << (8 * length)) - 1);
}

/* --- interrupts ------------------------------------------------------------------------ */

static void on_msix_config(struct trap_frame *f)
{
    (void)f;
    msix_config_count++;
    lapic_eoi();
}

static void on_msix_queue(struct trap_frame *f)
{
    (void)f;
    msix_queue_count++;
    lapic_eoi();
}

static void on_intx(struct trap_frame *f)
{
    (void)f;
    intx_isr = rd8(isr_reg);        /* read to clear: the function lowers its pin */
    intx_count++;
    lapic_eoi();
}

static void msix_entry(int vector, uint8_t idt_vector, int masked)
{
    uintptr_t entry = msix_table + 16 * vector;
    wr32(entry, LAPIC_BASE | lapic_id() << 12);
    wr32(entry + 4, 0);
    wr32(entry + 8, idt_vector);
    wr32(entry + 12, masked);
}

/* Wait with interrupts enabled until COUNTER moves past BEFORE, or about 100 ms. */
static int wait_interrupt(volatile uint32_t *counter, uint32_t before)
{
    for (int i = 0; i < 100 && *counter == before; i++) {
        __asm__ volatile("sti; nop; cli");
        pit_delay_us(1000);
    }
    __asm__ volatile("sti; nop; cli");
    return *counter != before;
}

/* --- the device --------------------------------------------------------------------- */

static uint64_t device_features(void)
{
    wr32(common + C_DFSELECT, 0);
    uint32_t low = rd32(common + C_DF);
    wr32(common + C_DFSELECT, 1);
    return low | (uint64_t)rd32(common + C_DF) << 32;
}

static int negotiate(uint64_t features)
{
    wr8(common + C_STATUS, 0);
    while (rd8(common + C_STATUS) != 0)
        ;
    wr8(common + C_STATUS, S_ACKNOWLEDGE);
    wr8(common + C_STATUS, S_ACKNOWLEDGE | S_DRIVER);
    wr32(common + C_GFSELECT, 0);
    wr32(common + C_GF, (uint32_t)features);
    wr32(common + C_GFSELECT, 1);
    wr32(common + C_GF, (uint32_t)(features >> 32));
    wr8(common + C_STATUS, S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK);
    return (rd8(common + C_STATUS) & S_FEATURES_OK) != 0;
}

static void setup_queue(uint16_t vector)
{
    memset(ring_desc, 0, sizeof(ring_desc));
    memset(&avail, 0, sizeof(avail));
    memset((void *)&used, 0, sizeof(used));
    last_used = 0;
    wr16(common + C_QSELECT, 0);
    wr16(common + C_QSIZE, QUEUE_SIZE);
    wr16(common + C_QMSIX, vector);
    wr32(common + C_QDESC, (uintptr_t)ring_desc);
    wr32(common + C_QDESC + 4, 0);
    wr32(common + C_QDRIVER, (uintptr_t)&avail);
    wr32(common + C_QDRIVER + 4, 0);
    wr32(common + C_QDEVICE, (uintptr_t)&used);
    wr32(common + C_QDEVICE + 4, 0);
    wr16(common + C_QENABLE, 1);
}

static void set_desc(struct desc *d, const volatile void *addr, uint32_t len, uint16_t flags, uint16_t next)
{
    d->addr = (uintptr_t)addr;
    d->len = len;
    d->flags = flags;
    d->next = next;
}

static void publish(uint16_t head)
{
    avail.ring[avail.idx % QUEUE_SIZE] = head;
    __asm__ volatile("" : : : "memory");
    avail.idx++;
}

static void kick(void)
{
    __asm__ volatile("mfence" : : : "memory");
    wr16(notify_base + rd16(common + C_QNOFF) * notify_multiplier, 0);
}

/* Wait until the device has returned COUNT more chains; the heads in order. */
static void reap(int count, uint32_t *heads)
{
    for (int n = 0; n < count; n++) {
        for (uint32_t spins = 0; used.idx == last_used; spins++) {
            if (spins == 200000000u) {
                printf("timeout waiting for the device\n");
                debug_exit(0x7f);
            }
            __asm__ volatile("pause");
        }
        if (heads)
            heads[n] = used.ring[last_used % QUEUE_SIZE].id;
        last_used++;
    }
}

/* Request I (header, data, status) at descriptors 3 * I .. 3 * I + 2, not yet published. */
static uint16_t build(int i, uint32_t type, uint32_t sector, const volatile void *buf, uint32_t len,
                      int device_writes)
{
    uint16_t head = (uint16_t)(3 * i);
    headers[i].type = type;
    headers[i].reserved = 0;
    headers[i].sector = sector;
    statuses[i] = 0xff;
    set_desc(&ring_desc[head], &headers[i], sizeof(headers[i]), DESC_F_NEXT, head + 1);
    if (len) {
        set_desc(&ring_desc[head + 1], buf, len, DESC_F_NEXT | (device_writes ? DESC_F_WRITE : 0), head + 2);
        set_desc(&ring_desc[head + 2], &statuses[i], 1, DESC_F_WRITE, 0);
    } else {
        set_desc(&ring_desc[head + 1], &statuses[i], 1, DESC_F_WRITE, 0);
    }
    return head;
}

static int request(uint32_t type, uint32_t sector, const volatile void *buf, uint32_t len, int device_writes)
{
    publish(build(0, type, sector, buf, len, device_writes));
    kick();
    reap(1, 0);
    return status_byte;
}

static int indirect_read(uint32_t sector)
{
    header.type = T_IN;
    header.reserved = 0;
    header.sector = sector;
    status_byte = 0xff;
    set_desc(&indirect[0], &header, sizeof(header), DESC_F_NEXT, 1);
    set_desc(&indirect[1], data, SECTOR, DESC_F_NEXT | DESC_F_WRITE, 2);
    set_desc(&indirect[2], &status_byte, 1, DESC_F_WRITE, 0);
    set_desc(&ring_desc[QUEUE_SIZE - 1], indirect, sizeof(indirect), DESC_F_INDIRECT, 0);
    publish(QUEUE_SIZE - 1);
    kick();
    reap(1, 0);
    return status_byte;
}

static void print_bytes(const char *what, const uint8_t *p, int n)
{
    printf("%s:", what);
    for (int i = 0; i < n; i++)
        printf(" %02x", p[i]);
    printf("\n");
}

static const char *yes(int condition)
{
    return condition ? "yes" : "no";
}

static void fill_pattern(void)
{
    for (int i = 0; i < SECTOR; i++)
        data[i] = (uint8_t)(i * 7 + 3);
    memcpy(data, "written by the pyhv virtio-pci test kernel", 42);
}

static void msix_part(uint64_t offered)
{
    uint32_t q;
    int status;

    printf("features accepted: %s\n", yes(negotiate(offered & (1ull << F_VERSION_1 | 1ull << F_INDIRECT_DESC |
                                                              1ull << F_RING_RESET))));
    wr16(common + C_QSELECT, 0);
    printf("num_queues: %u, queue 0 size: %u, notify_off: %u\n", rd16(common + C_NUMQ), rd16(common + C_QSIZE),
           rd16(common + C_QNOFF));
    printf("capacity: %u sectors, through the PCI_CFG window: %u\n", rd32(device_cfg),
           pci_cfg_read(0x2000 + 0, 4));
    printf("num_queues through the PCI_CFG window: %u\n", pci_cfg_read(C_NUMQ, 2));

    msix_entry(0, VEC_MSIX_CONFIG, 0);
    msix_entry(1, VEC_MSIX_QUEUE, 0);
    cfg_write16(msix_cap + 2, 0x8000);
    wr16(common + C_MSIX, 7);
    printf("config_msix_vector 7 reads 0x%04x\n", rd16(common + C_MSIX));
    wr16(common + C_MSIX, 0);
    setup_queue(1);
    printf("config_msix_vector: %u, queue_msix_vector: %u\n", rd16(common + C_MSIX), rd16(common + C_QMSIX));
    wr8(common + C_STATUS, S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
    printf("queue_enable: %u, status: 0x%02x\n", rd16(common + C_QENABLE), rd8(common + C_STATUS));

    q = msix_queue_count;
    status = request(T_IN, 0, data, SECTOR, 1);
    printf("read sector 0: status %d\n", status);
    print_bytes("sector 0", data, 16);
    printf("MSI-X interrupt: %s\n", yes(wait_interrupt(&msix_queue_count, q)));

    msix_entry(1, VEC_MSIX_QUEUE, 1);                /* masked */
    fill_pattern();
    q = msix_queue_count;
    printf("write sector 1 (vector masked): status %d\n", request(T_OUT, 1, data, SECTOR, 0));
    int early = wait_interrupt(&msix_queue_count, q);
    printf("interrupt while masked: %s, pending bit: %u\n", yes(early), rd32(msix_pba) >> 1 & 1);
    wr32(msix_table + 16 + 12, 0);                   /* unmask */
    int late = wait_interrupt(&msix_queue_count, q);
    printf("after unmasking: interrupt %s, pending bit %u\n", yes(late), rd32(msix_pba) >> 1 & 1);

    memset(data, 0, SECTOR);
    status = indirect_read(1);
    printf("indirect read of sector 1: status %d, %s\n", status,
           memcmp(data, "written by the pyhv virtio-pci test kernel", 42) == 0 &&
           data[100] == (uint8_t)(100 * 7 + 3) ? "matches" : "DIFFERS");

    uint32_t heads[IN_FLIGHT];
    for (int i = 0; i < IN_FLIGHT; i++) {
        memset(buffers[i], 0xee, SECTOR);
        publish(build(i, T_IN, (uint32_t)i, buffers[i], SECTOR, 1));
    }
    q = msix_queue_count;
    kick();
    reap(IN_FLIGHT, heads);
    for (int i = 1; i < IN_FLIGHT; i++)              /* the device may complete them in any order */
        for (int j = i; j > 0 && heads[j - 1] > heads[j]; j--) {
            uint32_t t = heads[j];
            heads[j] = heads[j - 1];
            heads[j - 1] = t;
        }
    printf("%d requests in flight: heads %u %u %u, statuses %u %u %u, sector 1 in buffer 1: %s\n", IN_FLIGHT,
           heads[0], heads[1], heads[2], statuses[0], statuses[1], statuses[2],
           yes(memcmp(buffers[1], "written by the pyhv", 19) == 0));
    printf("interrupted: %s\n", yes(wait_interrupt(&msix_queue_count, q)));

    memset(data, 0, SECTOR);
    status = request(T_GET_ID, 0, data, 20, 1);
    printf("get id: status %d, id \"%s\"\n", status, (const char *)data);
    printf("flush: status %d\n", request(T_FLUSH, 0, 0, 0, 0));
    segment.sector = 2;
    segment.count = 1;
    segment.flags = 0;
    printf("write zeroes to sector 2: status %d\n", request(T_WRITE_ZEROES, 0, &segment, sizeof(segment), 0));
    memset(data, 0xee, SECTOR);
    request(T_IN, 2, data, SECTOR, 1);
    printf("sector 2 now zero: %s\n", yes(data[0] == 0 && data[511] == 0));
    segment.sector = 3;
    printf("discard sector 3: status %d\n", request(T_DISCARD, 0, &segment, sizeof(segment), 0));
    printf("read past the end: status %d\n", request(T_IN, rd32(device_cfg), data, SECTOR, 1));

    /* queue reset (VIRTIO_F_RING_RESET): the queue comes back disabled with its defaults */
    wr16(common + C_QSELECT, 0);
    wr16(common + C_QRESET, 1);
    while (rd16(common + C_QRESET))
        ;
    printf("queue reset: enable %u, size %u, vector 0x%04x\n", rd16(common + C_QENABLE), rd16(common + C_QSIZE),
           rd16(common + C_QMSIX));
    setup_queue(1);
    q = msix_queue_count;
    status = request(T_IN, 0, data, SECTOR, 1);
    printf("read after the queue reset: status %d, interrupt %s\n", status,
           yes(wait_interrupt(&msix_queue_count, q)));

    wr8(common + C_STATUS, 0);
    while (rd8(common + C_STATUS))
        ;
    wr16(common + C_QSELECT, 0);
    printf("device reset: config vector 0x%04x, queue enable %u, queue vector 0x%04x\n", rd16(common + C_MSIX),
           rd16(common + C_QENABLE), rd16(common + C_QMSIX));
    printf("config interrupts: %u\n", msix_config_count);
}

static void intx_part(void)
{
    uint8_t line = cfg_read8(PCI_INT_LINE);
    cfg_write16(msix_cap + 2, 0);                    /* MSI-X off: INTx */
    ioapic_route(line, IOAPIC_LEVEL | VEC_INTX, lapic_id());
    negotiate(1ull << F_VERSION_1);
    setup_queue(NO_VECTOR);
    wr8(common + C_STATUS, S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
    uint32_t before = intx_count;
    printf("INTx read of sector 0: status %d\n", request(T_IN, 0, data, SECTOR, 1));
    int interrupted = wait_interrupt(&intx_count, before);
    printf("INTx interrupt on IRQ %u: %s, ISR in the handler 0x%x, ISR after 0x%x\n", line,
           yes(interrupted), intx_isr, rd8(isr_reg));
    ioapic_route(line, IOAPIC_MASKED | IOAPIC_LEVEL | VEC_INTX, lapic_id());
    wr8(common + C_STATUS, 0);
}

void kmain(void)
{
    serial_init();
    printf("virtio-pci test\n");
    pic_disable();
    gdt_install();
    trap_init();
    trap_set_handler(VEC_MSIX_CONFIG, on_msix_config);
    trap_set_handler(VEC_MSIX_QUEUE, on_msix_queue);
    trap_set_handler(VEC_INTX, on_intx);

    int slot = find_device();
    if (slot < 0) {
        printf("no virtio-blk-pci function found\n");
        debug_exit(0x7e);
    }
    printf("virtio-blk-pci at 00:%02x.0: revision %u, class 0x%04x, subsystem %04x:%04x, pin %u\n", slot,
           cfg_read8(0x08), cfg_read16(0x0a), cfg_read16(0x2c), cfg_read16(0x2e), cfg_read8(0x3d));
    cfg_write16(PCI_COMMAND, cfg_read16(PCI_COMMAND) | PCI_CMD_MEMORY | PCI_CMD_MASTER);
    walk_capabilities();
    if (!common || !isr_reg || !device_cfg || !notify_base || !pci_cfg_cap || !msix_cap) {
        printf("a virtio structure is missing\n");
        debug_exit(0x7c);
    }

    uint64_t offered = device_features();
    printf("offers VERSION_1 %s, INDIRECT_DESC %s, EVENT_IDX %s, RING_RESET %s\n",
           yes(offered >> F_VERSION_1 & 1), yes(offered >> F_INDIRECT_DESC & 1), yes(offered >> F_EVENT_IDX & 1),
           yes(offered >> F_RING_RESET & 1));
    printf("offers SEG_MAX %s, BLK_SIZE %s, FLUSH %s, DISCARD %s, WRITE_ZEROES %s\n",
           yes(offered >> BLK_F_SEG_MAX & 1), yes(offered >> BLK_F_BLK_SIZE & 1), yes(offered >> BLK_F_FLUSH & 1),
           yes(offered >> BLK_F_DISCARD & 1), yes(offered >> BLK_F_WRITE_ZEROES & 1));

    msix_part(offered);
    intx_part();
    printf("virtio-pci test done\n");
    debug_exit(0x16);
}
