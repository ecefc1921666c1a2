"""ATA register, bit and command names (ATA/ATAPI-6, T13/1410D; the command names as
Linux's include/linux/ata.h and QEMU's hw/ide have them)."""

SECTOR_SIZE = 512

# Command block registers, by offset from the block's base (0x1f0 / 0x170); 2-5 are the
# sector count and LBA low/mid/high (devicemodel.ide.unit.TASKFILE).
REG_DATA = 0
REG_ERROR_FEATURE = 1
REG_DEVICE = 6          # device/head
REG_STATUS_COMMAND = 7

# Status register
ERR = 0x01
DRQ = 0x08
DSC = 0x10              # device seek complete (ATA-6: "device specific"; QEMU's SEEK_STAT)
DRDY = 0x40
BSY = 0x80

# Error register
ABRT = 0x04
IDNF = 0x10
DIAG_PASSED = 0x01      # EXECUTE DEVICE DIAGNOSTIC: device 0 passed, device 1 passed or absent

# Device/head register
DEV_HEAD = 0x0F         # CHS head / LBA bits 27:24
DEV_SELECT = 0x10       # 0 = device 0 (master), 1 = device 1 (slave)
DEV_LBA = 0x40
DEV_OBSOLETE = 0xA0     # bits 7 and 5: read as one (QEMU's ATA_DEV_ALWAYS_ON)

# Device control register (control block, 0x3f6 / 0x376)
CTL_NIEN = 0x02
CTL_SRST = 0x04
CTL_HOB = 0x80

# Commands
CMD_DSM = 0x06                      # DATA SET MANAGEMENT (TRIM)
CMD_RECALIBRATE = 0x10
CMD_READ = 0x20
CMD_READ_ONCE = 0x21                # without retries (obsolete)
CMD_READ_EXT = 0x24
CMD_READ_DMA_EXT = 0x25
CMD_READ_NATIVE_MAX_EXT = 0x27
CMD_READ_MULTI_EXT = 0x29
CMD_WRITE = 0x30
CMD_WRITE_ONCE = 0x31
CMD_WRITE_EXT = 0x34
CMD_WRITE_DMA_EXT = 0x35
CMD_WRITE_MULTI_EXT = 0x39
CMD_VERIFY = 0x40
CMD_VERIFY_ONCE = 0x41
CMD_VERIFY_EXT = 0x42
CMD_SEEK = 0x70
CMD_EDD = 0x90                      # EXECUTE DEVICE DIAGNOSTIC
CMD_INIT_DEV_PARAMS = 0x91          # INITIALIZE DEVICE PARAMETERS
CMD_STANDBYNOW2 = 0x94
CMD_IDLEIMMEDIATE2 = 0x95
CMD_STANDBY2 = 0x96
CMD_SETIDLE2 = 0x97
CMD_CHK_POWER2 = 0x98
CMD_SLEEP2 = 0x99
CMD_READ_MULTI = 0xC4
CMD_WRITE_MULTI = 0xC5
CMD_SET_MULTI = 0xC6
CMD_READ_DMA = 0xC8
CMD_READ_DMA_ONCE = 0xC9
CMD_WRITE_DMA = 0xCA
CMD_WRITE_DMA_ONCE = 0xCB
CMD_STANDBYNOW1 = 0xE0
CMD_IDLEIMMEDIATE = 0xE1
CMD_STANDBY = 0xE2
CMD_SETIDLE = 0xE3
CMD_CHK_POWER = 0xE5
CMD_SLEEP = 0xE6
CMD_FLUSH = 0xE7
CMD_FLUSH_EXT = 0xEA
CMD_ID_ATA = 0xEC                   # IDENTIFY DEVICE
CMD_SET_FEATURES = 0xEF
CMD_READ_NATIVE_MAX = 0xF8

# SET FEATURES subcommands (the features register)
SETFEATURES_WC_ON = 0x02
SETFEATURES_XFER = 0x03
SETFEATURES_WC_OFF = 0x82
SETFEATURES_REVERT_ON = 0xCC        # a reset reverts to the power-on defaults
SETFEATURES_REVERT_OFF = 0x66
# subcommands QEMU accepts and ignores: APM, read look-ahead, AAM, ...
SETFEATURES_IGNORED = (0x05, 0x85, 0x55, 0xAA, 0x42, 0xC2, 0x67, 0x69, 0x96, 0x9A)

# SET FEATURES / set transfer mode: the sector count's bits 7:3 (bits 2:0 are the mode)
XFER_PIO_DEFAULT = 0x00
XFER_PIO = 0x01
XFER_SW_DMA = 0x02
XFER_MW_DMA = 0x04
XFER_UDMA = 0x08

DSM_TRIM = 0x01                     # DATA SET MANAGEMENT feature bit 0

MAX_MULT_SECTORS = 16               # QEMU's READ/WRITE MULTIPLE block size limit
LBA28_LIMIT = 1 << 28
