"""The ATA commands of an IDE hard disk (ATA/ATAPI-6 chapter 8), as QEMU's hw/ide/core.c
carries them out: each handler gets the channel and the selected unit and returns
whether the command is complete (the channel then clears BSY, sets DSC for the
commands marked so, and raises the interrupt) or continues with a data transfer.

PIO data-in (READ SECTORS (EXT), READ MULTIPLE (EXT), IDENTIFY DEVICE): each DRQ block
(one sector, or the READ/WRITE MULTIPLE block size) is offered with an interrupt; when
the host has read it the next follows. PIO data-out (WRITE SECTORS (EXT), WRITE
MULTIPLE (EXT)): the first block is asked for at once, without an interrupt; each block
written is stored and followed by an interrupt. DMA (READ/WRITE DMA (EXT), DATA SET
MANAGEMENT's TRIM) moves everything in one go through the channel's bus-master engine
once both the command and the engine's start bit are there.

Errors: a command QEMU does not know, or one the disk cannot do, aborts (ABRT). A
range beyond the disk sets IDNF (ATA-6 allows ABRT or IDNF; QEMU says ABRT); so does
READ VERIFY, which QEMU does not check. Writes to a read-only drive abort. A failing
host image aborts. Commands for a position with no disk abort (EXECUTE DEVICE
DIAGNOSTIC aside), and commands for an absent slave are ignored, as in QEMU.

INITIALIZE DEVICE PARAMETERS sets the CHS translation's heads (device register bits
3:0, plus one) and sectors per track (sector count), as QEMU 7.2 does; SEEK,
RECALIBRATE and the power commands succeed and change nothing.
"""

from __future__ import annotations

from devicemodel.block.image import BlockError
from devicemodel.guest_memory import DmaError
from devicemodel.ide import ata

DMA_READ, DMA_WRITE, DMA_TRIM = "read", "write", "trim"
TRIM_ENTRY = 8
TRIM_LBA_MASK = (1 << 48) - 1


def io_error(ch, u, error: int = ata.ABRT) -> None:
    """A transfer failed: the command ends with ``error`` and an interrupt."""
    u.abort(error)
    ch.raise_irq()


# --- PIO ---------------------------------------------------------------------------------

def sector_read(ch, u) -> None:
    """Offer the next DRQ block of a PIO read, or end the command (QEMU's ide_sector_read)."""
    u.status = ata.DRDY | ata.DSC
    u.error = 0
    if u.nsector == 0:
        u.halt_transfer()
        return
    count = min(u.nsector, u.req_sectors)
    sector = u.sector_number()
    if not u.disk.in_range(sector, count):
        io_error(ch, u, ata.IDNF)
        return
    try:
        data = u.disk.read(sector, count)
    except BlockError:
        io_error(ch, u)
        return
    u.set_sector_number(sector + count)
    u.nsector -= count
    u.start_transfer(data, "read", to_host=True)
    ch.raise_irq()


def sector_write(ch, u) -> None:
    """Store the DRQ block the host wrote; ask for the next one or end the command."""
    count = min(u.nsector, u.req_sectors)
    sector = u.sector_number()
    u.status = ata.DRDY | ata.DSC
    if not u.disk.in_range(sector, count):
        io_error(ch, u, ata.IDNF)
        return
    try:
        u.disk.write_bytes(sector * ata.SECTOR_SIZE, u.data[:count * ata.SECTOR_SIZE])
    except BlockError:
        io_error(ch, u)
        return
    u.nsector -= count
    u.set_sector_number(sector + count)
    if u.nsector:
        u.start_transfer(bytearray(min(u.nsector, u.req_sectors) * ata.SECTOR_SIZE), "write", to_host=False)
    else:
        u.halt_transfer()
    ch.raise_irq()


def transfer_stop(ch, u) -> None:
    u.halt_transfer()


TRANSFER_ENDS = {"read": sector_read, "write": sector_write, "stop": transfer_stop}


def start_pio_write(u, block_sectors: int) -> None:
    u.req_sectors = block_sectors
    u.status = ata.DRDY | ata.DSC
    u.start_transfer(bytearray(min(u.nsector, block_sectors) * ata.SECTOR_SIZE), "write", to_host=False)


# --- DMA ---------------------------------------------------------------------------------

def dma_transfer(ch, u) -> None:
    """The whole DMA command, now that the engine runs (QEMU's ide_dma_cb)."""
    bm = ch.bm
    need = u.nsector * ata.SECTOR_SIZE
    try:
        pieces, described = bm.regions(need)
    except DmaError:
        bm.fail()
        dma_end(ch, u, error=ata.ABRT)
        return
    if sum(length for _, length in pieces) < need:
        # The PRDs ran out: DRQ stays with nobody to serve it; no interrupt.
        u.status = ata.DRDY | ata.DSC
        u.dma_kind = None
        bm.finish(more=False)
        return
    sector = u.sector_number()
    if u.dma_kind != DMA_TRIM and not u.disk.in_range(sector, u.nsector):
        dma_end(ch, u, error=ata.IDNF)
        return
    try:
        if u.dma_kind == DMA_READ:
            offset = sector * ata.SECTOR_SIZE
            for addr, length in pieces:
                bm.memory.write(addr, u.disk.read_bytes(offset, length))
                offset += length
        elif u.dma_kind == DMA_WRITE:
            offset = sector * ata.SECTOR_SIZE
            for addr, length in pieces:
                u.disk.write_bytes(offset, bm.memory.read(addr, length))
                offset += length
        elif not trim(u.disk, b"".join(bm.memory.read(addr, length) for addr, length in pieces)):
            dma_end(ch, u, error=ata.ABRT)
            return
    except BlockError:
        dma_end(ch, u, error=ata.ABRT)
        return
    if u.dma_kind != DMA_TRIM:
        u.set_sector_number(sector + u.nsector)
    u.nsector = 0
    dma_end(ch, u, more=described > need)


def dma_end(ch, u, error: int = 0, more: bool = False) -> None:
    if error:
        u.abort(error)
    else:
        u.status = ata.DRDY | ata.DSC
    u.dma_kind = None
    ch.bm.finish(more)
    ch.raise_irq()


def trim(disk, ranges: bytes) -> bool:
    """Discard each {48-bit LBA, 16-bit count} entry; False if one lies outside the disk."""
    for at in range(0, len(ranges), TRIM_ENTRY):
        entry = int.from_bytes(ranges[at:at + TRIM_ENTRY], "little")
        sector, count = entry & TRIM_LBA_MASK, entry >> 48
        if not count:
            continue
        if not disk.in_range(sector, count):
            return False
        disk.discard(sector, count)
    return True


# --- the commands ------------------------------------------------------------------------

def cmd_nop(ch, u, cmd) -> bool:
    return True


def cmd_identify(ch, u, cmd) -> bool:
    u.status = ata.DRDY | ata.DSC
    words = u.disk.identify(u.mult_sectors)
    u.start_transfer(b"".join(w.to_bytes(2, "little") for w in words), "stop", to_host=True)
    ch.raise_irq()
    return False


def cmd_read_pio(ch, u, cmd) -> bool:
    u.take_count(cmd == ata.CMD_READ_EXT)
    u.req_sectors = 1
    sector_read(ch, u)
    return False


def cmd_read_multiple(ch, u, cmd) -> bool:
    if not u.mult_sectors:
        u.abort()
        return True
    u.take_count(cmd == ata.CMD_READ_MULTI_EXT)
    u.req_sectors = u.mult_sectors
    sector_read(ch, u)
    return False


def refuse_read_only(u) -> bool:
    if u.disk.read_only:
        u.abort()
        return True
    return False


def cmd_write_pio(ch, u, cmd) -> bool:
    if refuse_read_only(u):
        return True
    u.take_count(cmd == ata.CMD_WRITE_EXT)
    start_pio_write(u, 1)
    return False


def cmd_write_multiple(ch, u, cmd) -> bool:
    if not u.mult_sectors:
        u.abort()
        return True
    if refuse_read_only(u):
        return True
    u.take_count(cmd == ata.CMD_WRITE_MULTI_EXT)
    start_pio_write(u, u.mult_sectors)
    return False


def cmd_read_dma(ch, u, cmd) -> bool:
    u.take_count(cmd == ata.CMD_READ_DMA_EXT)
    ch.start_dma(u, DMA_READ)
    return False


def cmd_write_dma(ch, u, cmd) -> bool:
    if refuse_read_only(u):
        return True
    u.take_count(cmd == ata.CMD_WRITE_DMA_EXT)
    ch.start_dma(u, DMA_WRITE)
    return False


def cmd_dsm(ch, u, cmd) -> bool:
    if u.feature != ata.DSM_TRIM or refuse_read_only(u):
        u.abort()
        return True
    u.nsector &= 0xFF                  # 512-byte blocks of ranges (QEMU reads only the low byte)
    if not u.nsector:
        return True
    ch.start_dma(u, DMA_TRIM)
    return False


def cmd_verify(ch, u, cmd) -> bool:
    u.take_count(cmd == ata.CMD_VERIFY_EXT)
    if not u.disk.in_range(u.sector_number(), u.nsector):
        u.abort(ata.IDNF)
    return True


def cmd_flush(ch, u, cmd) -> bool:
    try:
        u.disk.flush()
    except BlockError:
        u.abort()
        return True
    u.status = ata.DRDY | ata.DSC
    return True


def cmd_set_multiple(ch, u, cmd) -> bool:
    count = u.nsector & 0xFF
    if count and (count > ata.MAX_MULT_SECTORS or count & (count - 1)):
        u.abort()
    else:
        u.mult_sectors = count
    return True


def cmd_read_native_max(ch, u, cmd) -> bool:
    u.take_count(cmd == ata.CMD_READ_NATIVE_MAX_EXT)
    u.set_sector_number(u.disk.sectors - 1)
    return True


def cmd_check_power_mode(ch, u, cmd) -> bool:
    u.nsector = 0xFF                  # active or idle
    return True


def cmd_set_features(ch, u, cmd) -> bool:
    disk = u.disk
    if u.feature == ata.SETFEATURES_WC_ON:
        disk.write_cache = True
    elif u.feature == ata.SETFEATURES_WC_OFF:
        disk.write_cache = False
        return cmd_flush(ch, u, cmd)
    elif u.feature == ata.SETFEATURES_XFER:
        kind, number = u.nsector >> 3, u.nsector & 0x07
        if kind not in (ata.XFER_PIO_DEFAULT, ata.XFER_PIO, ata.XFER_SW_DMA, ata.XFER_MW_DMA, ata.XFER_UDMA):
            u.abort()
        else:
            disk.transfer_mode = (kind, number)
    elif u.feature in (ata.SETFEATURES_REVERT_ON, ata.SETFEATURES_REVERT_OFF):
        disk.reset_reverts = u.feature == ata.SETFEATURES_REVERT_ON
    elif u.feature not in ata.SETFEATURES_IGNORED:
        u.abort()
    return True


def cmd_init_dev_params(ch, u, cmd) -> bool:
    u.disk.chs_translation = ((u.select & ata.DEV_HEAD) + 1, u.nsector & 0xFF)
    return True


def cmd_execute_diagnostic(ch, u, cmd) -> bool:
    u.select = ata.DEV_OBSOLETE        # ATA-6: DEV (and LBA) cleared, as QEMU 7.2 does
    u.set_signature()
    u.status = ata.DRDY | ata.DSC
    u.error = ata.DIAG_PASSED         # a result, not an error: ERR stays clear
    ch.raise_irq()
    return False


SET_DSC = True
# opcode -> (handler, whether a success sets DSC), after QEMU's ide_cmd_table for hard disks
COMMANDS = {
    ata.CMD_DSM: (cmd_dsm, False),
    ata.CMD_RECALIBRATE: (cmd_nop, SET_DSC),
    ata.CMD_READ: (cmd_read_pio, False),
    ata.CMD_READ_ONCE: (cmd_read_pio, False),
    ata.CMD_READ_EXT: (cmd_read_pio, False),
    ata.CMD_READ_DMA_EXT: (cmd_read_dma, False),
    ata.CMD_READ_NATIVE_MAX_EXT: (cmd_read_native_max, SET_DSC),
    ata.CMD_READ_MULTI_EXT: (cmd_read_multiple, False),
    ata.CMD_WRITE: (cmd_write_pio, False),
    ata.CMD_WRITE_ONCE: (cmd_write_pio, False),
    ata.CMD_WRITE_EXT: (cmd_write_pio, False),
    ata.CMD_WRITE_DMA_EXT: (cmd_write_dma, False),
    ata.CMD_WRITE_MULTI_EXT: (cmd_write_multiple, False),
    ata.CMD_VERIFY: (cmd_verify, SET_DSC),
    ata.CMD_VERIFY_ONCE: (cmd_verify, SET_DSC),
    ata.CMD_VERIFY_EXT: (cmd_verify, SET_DSC),
    ata.CMD_SEEK: (cmd_nop, SET_DSC),
    ata.CMD_EDD: (cmd_execute_diagnostic, False),
    ata.CMD_INIT_DEV_PARAMS: (cmd_init_dev_params, SET_DSC),
    ata.CMD_STANDBYNOW2: (cmd_nop, False),
    ata.CMD_IDLEIMMEDIATE2: (cmd_nop, False),
    ata.CMD_STANDBY2: (cmd_nop, False),
    ata.CMD_SETIDLE2: (cmd_nop, False),
    ata.CMD_CHK_POWER2: (cmd_check_power_mode, SET_DSC),
    ata.CMD_SLEEP2: (cmd_nop, False),
    ata.CMD_READ_MULTI: (cmd_read_multiple, False),
    ata.CMD_WRITE_MULTI: (cmd_write_multiple, False),
    ata.CMD_SET_MULTI: (cmd_set_multiple, SET_DSC),
    ata.CMD_READ_DMA: (cmd_read_dma, False),
    ata.CMD_READ_DMA_ONCE: (cmd_read_dma, False),
    ata.CMD_WRITE_DMA: (cmd_write_dma, False),
    ata.CMD_WRITE_DMA_ONCE: (cmd_write_dma, False),
    ata.CMD_STANDBYNOW1: (cmd_nop, False),
    ata.CMD_IDLEIMMEDIATE: (cmd_nop, False),
    ata.CMD_STANDBY: (cmd_nop, False),
    ata.CMD_SETIDLE: (cmd_nop, False),
    ata.CMD_CHK_POWER: (cmd_check_power_mode, SET_DSC),
    ata.CMD_SLEEP: (cmd_nop, False),
    ata.CMD_FLUSH: (cmd_flush, False),
    ata.CMD_FLUSH_EXT: (cmd_flush, False),
    ata.CMD_ID_ATA: (cmd_identify, False),
    ata.CMD_SET_FEATURES: (cmd_set_features, SET_DSC),
    ata.CMD_READ_NATIVE_MAX: (cmd_read_native_max, SET_DSC),
}
