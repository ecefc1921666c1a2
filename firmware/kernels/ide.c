/*
 * IDE test kernel: the PIIX3 IDE function (00:01.1) of QEMU's pc machine and ATA disks
 * on it, driven the way a simple operating system drives them (ATA/ATAPI-6, the PIIX
 * bus-master registers).  It expects disks made by tests/test_ide_guest.py: sector N of
 * the primary master starts with "SECT" and N (le32) and continues with (N*31 + i*7)
 * mod 256; the secondary master has an MS-DOS partition table and a marker at byte 16.
 *
 * It finds the function and its bus-master BAR, resets both channels (SRST), reads the
 * signature and an absent slave's registers, dumps IDENTIFY DEVICE, and then reads and
 * writes sectors: PIO with an interrupt per DRQ block (LBA28, LBA48 with the high-order
 * register bytes, READ/WRITE MULTIPLE), bus-master DMA with a three-entry PRD table
 * (READ DMA, WRITE DMA EXT, engine started before the command), PRD tables that are too
 * short or too long, SET FEATURES, VERIFY, FLUSH, diagnostics and errors; then IDENTIFY
 * and a DMA read on the secondary channel (IRQ 15).  The same lines come out under QEMU
 * (-M pc) and pyhv, except where pyhv follows ATA-6 more closely (see the test).
 */
#include <stdint.h>

#include "debug_exit.h"
#include "desc.h"
#include "io.h"
#include "pic.h"
#include "serial.h"
#include "string.h"
#include "trap.h"

#define EXIT_CODE 0x15

#define ATA_ERROR 1
#define ATA_FEATURE 1
#define ATA_NSECT 2
#define ATA_LBAL 3
#define ATA_LBAM 4
#define ATA_LBAH 5
#define ATA_DEVICE 6
#define ATA_STATUS 7
#define ATA_COMMAND 7

#define ST_DRQ 0x08
#define ST_BSY 0x80

#define CTL_NIEN 0x02
#define CTL_SRST 0x04
#define CTL_HOB 0x80

#define BM_CMD 0
#define BM_STATUS 2
#define BM_PRD 4
#define BM_START 0x01
#define BM_TO_MEMORY 0x08
#define BM_ACTIVE 0x01
#define BM_ERROR 0x02
#define BM_INTR 0x04

#define SECTOR 512
#define SPINS 20000000u

struct channel {
    uint16_t cmd, ctl, bm;
    int irq;
};

struct prd {
    uint32_t base;
    uint32_t count;             /* bits 15:0 byte count, bit 31 end of table */
} __attribute__((packed));

static struct channel primary = { 0x1f0, 0x3f6, 0, 14 };
static struct channel secondary = { 0x170, 0x376, 0, 15 };
static volatile uint32_t irq_count[2];
static volatile uint8_t irq_status[2];

static struct prd prds[4] __attribute__((aligned(64)));
static uint8_t buffer[16 * SECTOR] __attribute__((aligned(4096)));
static uint8_t buffer2[4 * SECTOR] __attribute__((aligned(512)));
static uint8_t region64k[0x10000] __attribute__((aligned(0x10000)));
static uint16_t identify[256];

/* --- PCI configuration mechanism #1 ----------------------------------------------- */

static uint32_t cfg_addr(int dev, int fn, int reg)
{
    return 0x80000000u | (uint32_t)dev << 11 | (uint32_t)fn << 8 | (uint32_t)(reg & ~3);
}

static uint32_t cfg_read32(int dev, int fn, int reg)
{
    outl(0xcf8, cfg_addr(dev, fn, reg));
    return inl(0xcfc);
}

static void cfg_write16(int dev, int fn, int reg, uint16_t value)
{
    outl(0xcf8, cfg_addr(dev, fn, reg));
    outw((uint16_t)(0xcfc + (reg & 2)), value);
}

/* --- interrupts ------------------------------------------------------------------- */

static void on_irq(struct trap_frame *f)
{
    int index = f->vector == PIC_VECTOR_BASE + 14 ? 0 : 1;
    irq_status[index] = inb((uint16_t)((index ? secondary.cmd : primary.cmd) + ATA_STATUS));
    irq_count[index]++;
    outb(0xa0, 0x20);
    outb(0x20, 0x20);
}

static int channel_index(const struct channel *ch)
{
    return ch == &secondary;
}

/* Wait until the channel's interrupt count passes BEFORE; 0 on a timeout. */
static int wait_irq(const struct channel *ch, uint32_t before)
{
    for (uint32_t spins = 0; spins < SPINS; spins++) {
        if (irq_count[channel_index(ch)] != before)
            return 1;
        __asm__ volatile("pause");
    }
    printf("timeout waiting for IRQ %d\n", ch->irq);
    return 0;
}

/* --- ATA helpers ------------------------------------------------------------------ */

static uint8_t altstatus(const struct channel *ch)
{
    return inb(ch->ctl);
}

static void delay400ns(const struct channel *ch)
{
    for (int i = 0; i < 4; i++)
        altstatus(ch);
}

static int wait_not_busy(const struct channel *ch)
{
    for (uint32_t spins = 0; spins < SPINS; spins++)
        if (!(altstatus(ch) & ST_BSY))
            return 1;
    printf("timeout: BSY stays set (status 0x%02x)\n", altstatus(ch));
    return 0;
}

static void select_device(const struct channel *ch, uint8_t device)
{
    outb((uint16_t)(ch->cmd + ATA_DEVICE), device);
    delay400ns(ch);
}

/* SRST with interrupts off, device 0 selected before (QEMU keeps the selection over the
 * reset, and with an absent device 1 selected BSY would not show), and what device 0
 * reports after its diagnostic. */
static void soft_reset(const struct channel *ch)
{
    select_device(ch, 0xa0);
    outb(ch->ctl, CTL_SRST | CTL_NIEN);
    delay400ns(ch);
    outb(ch->ctl, CTL_NIEN);
    wait_not_busy(ch);
    printf("srst: status 0x%02x error 0x%02x\n", inb((uint16_t)(ch->cmd + ATA_STATUS)),
           inb((uint16_t)(ch->cmd + ATA_ERROR)));
}

static void print_taskfile(const char *what, const struct channel *ch)
{
    uint16_t b = ch->cmd;
    printf("%s: nsect %02x lbal %02x lbam %02x lbah %02x device %02x\n", what,
           inb((uint16_t)(b + ATA_NSECT)), inb((uint16_t)(b + ATA_LBAL)), inb((uint16_t)(b + ATA_LBAM)),
           inb((uint16_t)(b + ATA_LBAH)), inb((uint16_t)(b + ATA_DEVICE)));
}

/* Load the task file for an LBA28 command on device 0 and write the command. */
static void command28(const struct channel *ch, uint8_t cmd, uint32_t lba, uint8_t count, uint8_t feature)
{
    uint16_t b = ch->cmd;
    outb((uint16_t)(b + ATA_DEVICE), (uint8_t)(0xe0 | ((lba >> 24) & 0x0f)));
    outb((uint16_t)(b + ATA_FEATURE), feature);
    outb((uint16_t)(b + ATA_NSECT), count);
    outb((uint16_t)(b + ATA_LBAL), (uint8_t)lba);
    outb((uint16_t)(b + ATA_LBAM), (uint8_t)(lba >> 8));
    outb((uint16_t)(b + ATA_LBAH), (uint8_t)(lba >> 16));
    outb((uint16_t)(b + ATA_COMMAND), cmd);
}

/* The same for a 48-bit command: high-order bytes first. */
static void command48(const struct channel *ch, uint8_t cmd, uint64_t lba, uint16_t count)
{
    uint16_t b = ch->cmd;
    outb((uint16_t)(b + ATA_DEVICE), 0xe0);
    outb((uint16_t)(b + ATA_NSECT), (uint8_t)(count >> 8));
    outb((uint16_t)(b + ATA_LBAL), (uint8_t)(lba >> 24));
    outb((uint16_t)(b + ATA_LBAM), (uint8_t)(lba >> 32));
    outb((uint16_t)(b + ATA_LBAH), (uint8_t)(lba >> 40));
    outb((uint16_t)(b + ATA_NSECT), (uint8_t)count);
    outb((uint16_t)(b + ATA_LBAL), (uint8_t)lba);
    outb((uint16_t)(b + ATA_LBAM), (uint8_t)(lba >> 8));
    outb((uint16_t)(b + ATA_LBAH), (uint8_t)(lba >> 16));
    outb((uint16_t)(b + ATA_COMMAND), cmd);
}

static void read_words(const struct channel *ch, uint16_t *dst, int words)
{
    for (int i = 0; i < words; i++)
        dst[i] = inw(ch->cmd);
}

static void write_words(const struct channel *ch, const uint16_t *src, int words)
{
    for (int i = 0; i < words; i++)
        outw(ch->cmd, src[i]);
}

static uint8_t pattern(uint32_t lba, int i)
{
    return (uint8_t)(lba * 31 + i * 7);
}

/* Whether BUF holds the test disk's sector LBA. */
static int sector_ok(const uint8_t *buf, uint32_t lba)
{
    if (memcmp(buf, "SECT", 4) || *(const uint32_t *)(buf + 4) != lba)
        return 0;
    for (int i = 8; i < SECTOR; i++)
        if (buf[i] != pattern(lba, i))
            return 0;
    return 1;
}

static void fill_written(uint8_t *buf, uint32_t lba)
{
    for (int i = 0; i < SECTOR; i++)
        buf[i] = (uint8_t)(0xa5 ^ (lba * 13 + i * 3));
    memcpy(buf, "WROTE", 5);
    *(uint32_t *)(buf + 8) = lba;
}

static int written_ok(const uint8_t *buf, uint32_t lba)
{
    static uint8_t expect[SECTOR];
    fill_written(expect, lba);
    return !memcmp(buf, expect, SECTOR);
}

/* The data of a PIO data-in command issued when the interrupt count was BEFORE: one
 * interrupt per DRQ block of BLOCK sectors. */
static void pio_read(const struct channel *ch, const char *what, uint32_t before, uint32_t count, uint32_t block)
{
    int index = channel_index(ch);
    uint32_t irqs = 0, done = 0;
    while (done < count) {
        if (!wait_irq(ch, before + irqs))
            break;
        irqs++;
        if (!(irq_status[index] & ST_DRQ)) {
            printf("%s: no DRQ (status 0x%02x, error 0x%02x)\n", what, irq_status[index],
                   inb((uint16_t)(ch->cmd + ATA_ERROR)));
            return;
        }
        uint32_t n = count - done < block ? count - done : block;
        read_words(ch, (uint16_t *)(buffer + done * SECTOR), (int)(n * SECTOR / 2));
        done += n;
    }
    printf("%s: %u sectors, %u interrupts, status 0x%02x\n", what, done, irqs, altstatus(ch));
}

static void bm_clear(const struct channel *ch)
{
    outb((uint16_t)(ch->bm + BM_CMD), 0);
    outb((uint16_t)(ch->bm + BM_STATUS), BM_ERROR | BM_INTR);
}

static void bm_prepare(const struct channel *ch, int to_memory)
{
    bm_clear(ch);
    outl((uint16_t)(ch->bm + BM_PRD), (uint32_t)prds);
    outb((uint16_t)(ch->bm + BM_CMD), to_memory ? BM_TO_MEMORY : 0);
}

static void bm_start(const struct channel *ch, int to_memory)
{
    outb((uint16_t)(ch->bm + BM_CMD), (uint8_t)((to_memory ? BM_TO_MEMORY : 0) | BM_START));
}

/* After a DMA command that interrupts: the bus-master and ATA status, engine stopped. */
static void dma_finish(const struct channel *ch, const char *what, uint32_t before)
{
    int got = wait_irq(ch, before);
    uint8_t bm = inb((uint16_t)(ch->bm + BM_STATUS));
    outb((uint16_t)(ch->bm + BM_CMD), 0);
    printf("%s: irq %s, bm status 0x%02x, ata status 0x%02x error 0x%02x\n", what, got ? "yes" : "no",
           bm & 0x07, inb((uint16_t)(ch->cmd + ATA_STATUS)), inb((uint16_t)(ch->cmd + ATA_ERROR)));
}

static void set_prd(int i, void *base, uint32_t bytes, int last)
{
    prds[i].base = (uint32_t)base;
    prds[i].count = (bytes & 0xffff) | (last ? 0x80000000u : 0);
}

/* --- the tests -------------------------------------------------------------------- */

static int find_function(void)
{
    uint32_t id = cfg_read32(1, 1, 0x00);
    uint32_t class_rev = cfg_read32(1, 1, 0x08);
    printf("00:01.1 %04x:%04x class %06x\n", id & 0xffff, id >> 16, class_rev >> 8);
    if (id != 0x70108086u)
        return 0;
    uint32_t bar4 = cfg_read32(1, 1, 0x20);
    if (!(bar4 & 1) || !(bar4 & ~3u)) {
        printf("bar4 is not an assigned I/O BAR: 0x%08x\n", bar4);
        return 0;
    }
    primary.bm = (uint16_t)(bar4 & ~3u);
    secondary.bm = (uint16_t)(primary.bm + 8);
    uint32_t command = cfg_read32(1, 1, 0x04) & 0xffff;
    cfg_write16(1, 1, 0x04, (uint16_t)(command | 0x05));         /* I/O space, bus master */
    printf("bus master enabled: %s\n", (cfg_read32(1, 1, 0x04) & 0x05) == 0x05 ? "yes" : "no");
    return 1;
}

static void identify_device(const struct channel *ch, const char *what)
{
    select_device(ch, 0xa0);
    uint32_t before = irq_count[channel_index(ch)];
    outb((uint16_t)(ch->cmd + ATA_COMMAND), 0xec);
    wait_irq(ch, before);
    for (int i = 0; i < 128; i++)           /* doubleword I/O */
        ((uint32_t *)identify)[i] = inl(ch->cmd);
    char model[41], serial[21], firmware[9];
    for (int i = 0; i < 20; i++) {
        model[2 * i] = (char)(identify[27 + i] >> 8);
        model[2 * i + 1] = (char)identify[27 + i];
    }
    for (int i = 0; i < 10; i++) {
        serial[2 * i] = (char)(identify[10 + i] >> 8);
        serial[2 * i + 1] = (char)identify[10 + i];
    }
    for (int i = 0; i < 4; i++) {
        firmware[2 * i] = (char)(identify[23 + i] >> 8);
        firmware[2 * i + 1] = (char)identify[23 + i];
    }
    model[40] = serial[20] = firmware[8] = 0;
    printf("%s identify: model \"%s\" serial \"%s\" firmware \"%s\"\n", what, model, serial, firmware);
    printf("%s chs %u/%u/%u lba28 %u lba48 %u, status after 0x%02x\n", what, identify[1], identify[3],
           identify[6], identify[60] | (uint32_t)identify[61] << 16,
           identify[100] | (uint32_t)identify[101] << 16, altstatus(ch));
}

static void dump_identify(void)
{
    for (int row = 0; row < 32; row++) {
        printf("identify %3d:", row * 8);
        for (int i = 0; i < 8; i++) {
            int w = row * 8 + i;
            if (w == 255)
                printf(" ----");
            else
                printf(" %04x", identify[w]);
        }
        printf("\n");
    }
    uint8_t sum = 0;
    for (int i = 0; i < 512; i++)
        sum = (uint8_t)(sum + ((uint8_t *)identify)[i]);
    if ((identify[255] & 0xff) == 0xa5)
        printf("identify integrity word: signature a5, checksum %s\n", sum == 0 ? "ok" : "bad");
    else
        printf("identify integrity word: none (0x%04x)\n", identify[255]);
}

static void test_absent_slave(void)
{
    select_device(&primary, 0xb0);
    printf("absent slave: status 0x%02x alt 0x%02x error 0x%02x\n", inb(0x1f7), altstatus(&primary), inb(0x1f1));
    print_taskfile("absent slave", &primary);
    select_device(&primary, 0xa0);
}

static void test_pio(void)
{
    uint32_t before = irq_count[0];
    command28(&primary, 0x20, 3, 2, 0);                 /* READ SECTORS */
    pio_read(&primary, "read sectors lba 3", before, 2, 1);
    printf("read sectors data: %s %s\n", sector_ok(buffer, 3) ? "ok" : "bad", sector_ok(buffer + SECTOR, 4) ? "ok" : "bad");
    print_taskfile("after read sectors", &primary);

    /* WRITE SECTORS: the first block without an interrupt, an interrupt after each */
    fill_written(buffer, 100);
    fill_written(buffer + SECTOR, 101);
    uint32_t irqs = irq_count[0];
    command28(&primary, 0x30, 100, 2, 0);
    wait_not_busy(&primary);
    printf("write sectors: drq at once %s, interrupts before data %u\n",
           altstatus(&primary) & ST_DRQ ? "yes" : "no", irq_count[0] - irqs);
    for (int s = 0; s < 2; s++) {
        uint32_t mark = irq_count[0];
        write_words(&primary, (uint16_t *)(buffer + s * SECTOR), SECTOR / 2);
        wait_irq(&primary, mark);
    }
    printf("write sectors: interrupts %u, status 0x%02x\n", irq_count[0] - irqs, altstatus(&primary));
    memset(buffer, 0, 2 * SECTOR);
    before = irq_count[0];
    command28(&primary, 0x20, 100, 2, 0);
    pio_read(&primary, "read back lba 100", before, 2, 1);
    printf("read back: %s %s\n", written_ok(buffer, 100) ? "ok" : "bad", written_ok(buffer + SECTOR, 101) ? "ok" : "bad");

    /* LBA48: READ SECTORS EXT, then the high-order bytes through HOB */
    before = irq_count[0];
    command48(&primary, 0x24, 0x1234, 3);
    pio_read(&primary, "read sectors ext lba 0x1234", before, 3, 1);
    printf("read sectors ext data: %s %s %s\n", sector_ok(buffer, 0x1234) ? "ok" : "bad",
           sector_ok(buffer + SECTOR, 0x1235) ? "ok" : "bad", sector_ok(buffer + 2 * SECTOR, 0x1236) ? "ok" : "bad");
    print_taskfile("after read ext", &primary);
    outb(primary.ctl, CTL_HOB);
    print_taskfile("after read ext, hob", &primary);
    outb(primary.ctl, 0);

    /* SET MULTIPLE MODE 4, READ MULTIPLE 10 sectors: blocks of 4, 4, 2 */
    command28(&primary, 0xc6, 0, 4, 0);
    wait_not_busy(&primary);
    printf("set multiple 4: status 0x%02x\n", altstatus(&primary));
    before = irq_count[0];
    command28(&primary, 0xc4, 20, 10, 0);
    pio_read(&primary, "read multiple lba 20", before, 10, 4);
    int good = 1;
    for (int s = 0; s < 10; s++)
        good &= sector_ok(buffer + s * SECTOR, 20 + (uint32_t)s);
    printf("read multiple data: %s\n", good ? "ok" : "bad");
    command28(&primary, 0xc6, 0, 3, 0);                 /* not a power of two */
    wait_not_busy(&primary);
    printf("set multiple 3: status 0x%02x error 0x%02x\n", altstatus(&primary), inb(0x1f1));

    /* WRITE MULTIPLE 6 sectors in blocks of 4 and 2 */
    command28(&primary, 0xc6, 0, 4, 0);
    wait_not_busy(&primary);
    for (int s = 0; s < 6; s++)
        fill_written(buffer + s * SECTOR, 200 + (uint32_t)s);
    irqs = irq_count[0];
    command28(&primary, 0xc5, 200, 6, 0);
    wait_not_busy(&primary);
    write_words(&primary, (uint16_t *)buffer, 4 * SECTOR / 2);
    wait_irq(&primary, irqs);
    write_words(&primary, (uint16_t *)(buffer + 4 * SECTOR), 2 * SECTOR / 2);
    wait_irq(&primary, irqs + 1);
    printf("write multiple: interrupts %u, status 0x%02x\n", irq_count[0] - irqs, altstatus(&primary));
}

static void test_dma(void)
{
    uint32_t before;

    /* READ DMA 4 sectors into three regions: 512 + 1024 + 512 */
    memset(buffer, 0, 4 * SECTOR);
    set_prd(0, buffer, SECTOR, 0);
    set_prd(1, buffer + 2 * SECTOR, 2 * SECTOR, 0);
    set_prd(2, buffer2, SECTOR, 1);
    bm_prepare(&primary, 1);
    before = irq_count[0];
    command28(&primary, 0xc8, 40, 4, 0);
    bm_start(&primary, 1);
    dma_finish(&primary, "read dma lba 40", before);
    printf("read dma data: %s %s %s %s\n", sector_ok(buffer, 40) ? "ok" : "bad",
           sector_ok(buffer + 2 * SECTOR, 41) ? "ok" : "bad", sector_ok(buffer + 3 * SECTOR, 42) ? "ok" : "bad",
           sector_ok(buffer2, 43) ? "ok" : "bad");
    print_taskfile("after read dma", &primary);

    /* WRITE DMA EXT 2 sectors, the engine started before the command */
    fill_written(buffer, 300);
    fill_written(buffer + SECTOR, 301);
    set_prd(0, buffer, 2 * SECTOR, 1);
    bm_prepare(&primary, 0);
    bm_start(&primary, 0);
    before = irq_count[0];
    command48(&primary, 0x35, 300, 2);
    dma_finish(&primary, "write dma ext lba 300", before);
    memset(buffer, 0, 2 * SECTOR);
    before = irq_count[0];
    command28(&primary, 0x20, 300, 2, 0);
    pio_read(&primary, "read back lba 300", before, 2, 1);
    printf("write dma ext data: %s %s\n", written_ok(buffer, 300) ? "ok" : "bad",
           written_ok(buffer + SECTOR, 301) ? "ok" : "bad");

    /* a PRD table shorter than the transfer: no interrupt, the engine stops, DRQ drops */
    set_prd(0, buffer, SECTOR, 1);
    bm_prepare(&primary, 1);
    before = irq_count[0];
    command28(&primary, 0xc8, 50, 2, 0);
    bm_start(&primary, 1);
    uint32_t spins = 0;
    while ((inb((uint16_t)(primary.bm + BM_STATUS)) & BM_ACTIVE) && spins++ < SPINS)
        ;
    for (spins = 0; spins < 100000; spins++)
        __asm__ volatile("pause");
    printf("short prd table: irqs %u, bm status 0x%02x, ata alt status 0x%02x\n", irq_count[0] - before,
           inb((uint16_t)(primary.bm + BM_STATUS)) & 0x07, altstatus(&primary));
    outb((uint16_t)(primary.bm + BM_CMD), 0);

    /* a PRD table longer than the transfer: the engine stays active */
    set_prd(0, buffer, 8 * SECTOR, 1);
    bm_prepare(&primary, 1);
    before = irq_count[0];
    command28(&primary, 0xc8, 60, 1, 0);
    bm_start(&primary, 1);
    dma_finish(&primary, "long prd table", before);
    printf("long prd table data: %s\n", sector_ok(buffer, 60) ? "ok" : "bad");

    /* a 64 KiB region (byte count 0) for 128 sectors */
    set_prd(0, region64k, 0, 1);
    bm_prepare(&primary, 1);
    before = irq_count[0];
    command28(&primary, 0xc8, 1000, 128, 0);
    bm_start(&primary, 1);
    dma_finish(&primary, "64 KiB region", before);
    int good = 1;
    for (uint32_t s = 0; s < 128; s++)
        good &= sector_ok(region64k + s * SECTOR, 1000 + s);
    printf("64 KiB region data: %s\n", good ? "ok" : "bad");
}

/* READ SECTORS at cylinder C, head H, sector S (the LBA bit clear); EXPECT: its LBA */
static void chs_read(const char *what, uint16_t c, uint8_t h, uint8_t sector, uint32_t expect)
{
    uint16_t b = primary.cmd;
    outb((uint16_t)(b + ATA_DEVICE), (uint8_t)(0xa0 | h));
    outb((uint16_t)(b + ATA_NSECT), 1);
    outb((uint16_t)(b + ATA_LBAL), sector);
    outb((uint16_t)(b + ATA_LBAM), (uint8_t)c);
    outb((uint16_t)(b + ATA_LBAH), (uint8_t)(c >> 8));
    uint32_t before = irq_count[0];
    outb((uint16_t)(b + ATA_COMMAND), 0x20);
    pio_read(&primary, what, before, 1, 1);
    printf("%s data: %s\n", what, sector_ok(buffer, expect) ? "ok" : "bad");
    print_taskfile(what, &primary);
}

static void initialize_device_parameters(uint8_t heads, uint8_t sectors)
{
    outb(0x1f6, (uint8_t)(0xa0 | (heads - 1)));
    outb(0x1f2, sectors);
    outb(0x1f7, 0x91);
    wait_not_busy(&primary);
    printf("initialize device parameters %u heads %u sectors: status 0x%02x\n", heads, sectors,
           altstatus(&primary));
}

static void test_misc(void)
{
    uint32_t before;

    /* SET FEATURES: transfer mode UDMA 2, then IDENTIFY word 88 */
    command28(&primary, 0xef, 0, 0x42, 0x03);
    wait_not_busy(&primary);
    printf("set features udma2: status 0x%02x\n", altstatus(&primary));
    command28(&primary, 0xef, 0, 0x22, 0x03);
    wait_not_busy(&primary);
    printf("set features mwdma2: status 0x%02x\n", altstatus(&primary));
    before = irq_count[0];
    outb(0x1f7, 0xec);
    wait_irq(&primary, before);
    read_words(&primary, identify, 256);
    printf("identify words 62 63 88 after set features: %04x %04x %04x\n", identify[62], identify[63], identify[88]);
    command28(&primary, 0xef, 0, 0x45, 0x03);               /* back to UDMA 5 */
    wait_not_busy(&primary);
    command28(&primary, 0xef, 0, 0, 0x77);                  /* unknown subcommand */
    wait_not_busy(&primary);
    printf("set features 0x77: status 0x%02x error 0x%02x\n", altstatus(&primary), inb(0x1f1));

    command28(&primary, 0x40, 10, 5, 0);                    /* READ VERIFY */
    wait_not_busy(&primary);
    printf("read verify: status 0x%02x\n", altstatus(&primary));
    command28(&primary, 0xe7, 0, 0, 0);                     /* FLUSH CACHE */
    wait_not_busy(&primary);
    printf("flush cache: status 0x%02x\n", altstatus(&primary));
    command28(&primary, 0xea, 0, 0, 0);                     /* FLUSH CACHE EXT */
    wait_not_busy(&primary);
    printf("flush cache ext: status 0x%02x\n", altstatus(&primary));
    chs_read("chs 1/2/5", 1, 2, 5, (1 * 16 + 2) * 63 + 4);
    initialize_device_parameters(4, 32);
    chs_read("chs 1/2/5 with 4 heads, 32 sectors", 1, 2, 5, (1 * 4 + 2) * 32 + 4);
    initialize_device_parameters(16, 63);
    command28(&primary, 0xe5, 0, 0, 0);                     /* CHECK POWER MODE */
    wait_not_busy(&primary);
    printf("check power mode: status 0x%02x count 0x%02x\n", altstatus(&primary), inb(0x1f2));
    command28(&primary, 0xf8, 0, 0, 0);                     /* READ NATIVE MAX ADDRESS */
    wait_not_busy(&primary);
    print_taskfile("read native max", &primary);

    before = irq_count[0];
    command28(&primary, 0x90, 0, 0, 0);                     /* EXECUTE DEVICE DIAGNOSTIC */
    wait_irq(&primary, before);
    printf("diagnostic: status 0x%02x error 0x%02x\n", irq_status[0], inb(0x1f1));
    print_taskfile("diagnostic", &primary);

    before = irq_count[0];
    command28(&primary, 0xf0, 0, 0, 0);                     /* not a command */
    wait_irq(&primary, before);
    printf("unknown command 0xf0: status 0x%02x error 0x%02x\n", irq_status[0], inb(0x1f1));
    before = irq_count[0];
    command28(&primary, 0xa1, 0, 0, 0);                     /* IDENTIFY PACKET DEVICE */
    wait_irq(&primary, before);
    printf("identify packet device: status 0x%02x error 0x%02x\n", irq_status[0], inb(0x1f1));

    /* nIEN: a command completes without an interrupt */
    outb(primary.ctl, CTL_NIEN);
    before = irq_count[0];
    command28(&primary, 0xe7, 0, 0, 0);
    wait_not_busy(&primary);
    for (uint32_t spins = 0; spins < 100000; spins++)
        __asm__ volatile("pause");
    printf("nien: interrupts %u, status 0x%02x\n", irq_count[0] - before, inb(0x1f7));
    outb(primary.ctl, 0);
}

static void test_secondary(void)
{
    soft_reset(&secondary);
    print_taskfile("secondary signature", &secondary);
    outb(secondary.ctl, 0);
    identify_device(&secondary, "secondary master");
    memset(buffer, 0, SECTOR);
    set_prd(0, buffer, SECTOR, 1);
    bm_prepare(&secondary, 1);
    uint32_t before = irq_count[1];
    command28(&secondary, 0xc8, 0, 1, 0);
    bm_start(&secondary, 1);
    dma_finish(&secondary, "secondary read dma lba 0", before);
    printf("secondary sector 0: \"%.16s\" signature %02x%02x\n", (const char *)buffer + 16, buffer[510], buffer[511]);
    printf("primary interrupts stayed at %u\n", irq_count[0]);
}

void kmain(void)
{
    serial_init();
    printf("ide test\n");
    pic_disable();
    gdt_install();
    trap_init();
    trap_set_handler(PIC_VECTOR_BASE + 14, on_irq);
    trap_set_handler(PIC_VECTOR_BASE + 15, on_irq);
    outb(0x21, 0xfb);                       /* the cascade */
    outb(0xa1, 0x3f);                       /* IRQ 14 and 15 */
    if (!find_function())
        debug_exit(0x7f);

    soft_reset(&primary);
    print_taskfile("primary signature", &primary);
    test_absent_slave();
    outb(primary.ctl, 0);
    __asm__ volatile("sti");

    identify_device(&primary, "primary master");
    dump_identify();
    test_pio();
    test_dma();

    /* past the end of the disk */
    uint32_t before = irq_count[0];
    command28(&primary, 0x20, identify[60] | (uint32_t)identify[61] << 16, 1, 0);
    wait_irq(&primary, before);
    printf("read past the end: status 0x%02x error 0x%02x\n", irq_status[0], inb(0x1f1));

    test_misc();
    test_secondary();
    printf("ide test done\n");
    debug_exit(EXIT_CODE);
}
