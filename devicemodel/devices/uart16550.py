"""The 16550A UART (PC serial port), after the National Semiconductor PC16550D datasheet.

Eight byte-wide registers at ``iobase``; with LCR.DLAB set, offsets 0 and 1 are the
divisor latch (DLL/DLM) instead of RBR/THR and IER:

    0  RBR (read) / THR (write) / DLL     4  MCR
    1  IER / DLM                          5  LSR
    2  IIR (read) / FCR (write)           6  MSR
    3  LCR                                7  SCR

Transmission is instant: a byte written to THR goes straight to the chardev backend, so
THR is always empty and LSR.THRE and LSR.TEMT always read 1. Bytes from the outside
arrive through ``receive()`` into the receive FIFO (16 bytes with FCR.0 set, else the
single RBR), with overrun (LSR.OE) when it is full. MCR.LOOP loops transmitted bytes
back into the receiver and the modem-control outputs into the MSR inputs.

The interrupt output follows the IIR priority rules (receiver line status, received
data, THR empty, modem status) and drives ``irq(level)`` on every level change. Without
a clock there is no character-timeout delay: data below the FIFO trigger level is
reported as a character timeout (IIR 0xc) right away, received data at or above it as
"received data available" (IIR 0x4); drivers treat both alike.
"""

from __future__ import annotations

from collections import deque
from typing import Callable

from devicemodel.address_space import Region

# Register offsets
RBR = THR = DLL = 0
IER = DLM = 1
IIR = FCR = 2
LCR = 3
MCR = 4
LSR = 5
MSR = 6
SCR = 7

IER_RDA = 0x01      # received data available (and character timeout)
IER_THRE = 0x02     # transmitter holding register empty
IER_RLS = 0x04      # receiver line status
IER_MS = 0x08       # modem status

IIR_NO_INT = 0x01
IIR_MS = 0x00
IIR_THRE = 0x02
IIR_RDA = 0x04
IIR_RLS = 0x06
IIR_TIMEOUT = 0x0C
IIR_FIFO_ENABLED = 0xC0

FCR_ENABLE = 0x01
FCR_CLEAR_RX = 0x02
FCR_CLEAR_TX = 0x04
FCR_TRIGGER_LEVELS = (1, 4, 8, 14)  # by FCR bits 7:6

LCR_DLAB = 0x80

MCR_DTR = 0x01
MCR_RTS = 0x02
MCR_OUT1 = 0x04
MCR_OUT2 = 0x08
MCR_LOOP = 0x10

LSR_DR = 0x01
LSR_OE = 0x02
LSR_THRE = 0x20
LSR_TEMT = 0x40

MSR_DCTS = 0x01
MSR_DDSR = 0x02
MSR_TERI = 0x04
MSR_DDCD = 0x08
MSR_CTS = 0x10
MSR_DSR = 0x20
MSR_RI = 0x40
MSR_DCD = 0x80
MSR_DELTAS = 0x0F

FIFO_SIZE = 16
# Modem inputs when not in loopback: a terminal that is connected and ready.
EXTERNAL_MODEM_INPUTS = MSR_DCD | MSR_DSR | MSR_CTS


def _no_irq(level: int) -> None:
    pass


class Uart16550:
    """A 16550A at ``iobase``, transmitting to ``chardev.write(bytes)``."""

    def __init__(self, chardev, iobase: int = 0x3F8, irq: Callable[[int], None] = _no_irq,
                 name: str = "serial0"):
        self.chardev = chardev
        self.iobase = iobase
        self.irq = irq
        self.name = name
        self.region = Region(base=iobase, size=8, name=name, read=self.read, write=self.write,
                             owner=self, sizes=(1, 2, 4), impl_size=1)
        self.regions = (self.region,)
        self._coalesce = None
        self._coalescing = None
        self.reset()

    def reset(self) -> None:
        """Power-on state (datasheet table "UART reset configuration")."""
        self.divisor = 0x000C  # 9600 baud; the datasheet leaves it undefined
        self.ier = 0
        self.lcr = 0
        self.mcr = 0
        self.scr = 0
        self.fifo_enabled = False
        self.rx_trigger = 1
        self.msr = EXTERNAL_MODEM_INPUTS
        self.rx: deque[int] = deque()
        self._rbr = 0            # last byte read from RBR: what an empty RBR reads as
        self._overrun = False
        self._thre_pending = False
        self._irq_level = 0
        self._update_coalescing()

    def set_tx_coalescing(self, switch: Callable[[bool], None]) -> None:
        """``switch(on)``: THR writes may wait in the hypervisor's coalesced port I/O ring
        (the vCPU loop writes them at its next exit) while the THR-empty interrupt is off:
        the driver then polls LSR before each byte, a read that exits and lets the bytes
        before it through (a kernel console, whose byte per exit was the boot's most
        frequent exit).  With the interrupt on, each byte reaches the UART at once, which
        raises the interrupt for the next."""
        self._coalesce = switch
        self._coalescing = None
        self._update_coalescing()

    def _update_coalescing(self) -> None:
        on = not self.ier & IER_THRE
        if self._coalesce is not None and on != self._coalescing:
            self._coalescing = on
            self._coalesce(on)

    # --- the guest's side: register reads and writes -------------------------

    def read(self, offset: int, size: int) -> int:
        dlab = self.lcr & LCR_DLAB
        if offset == RBR:
            return self.divisor & 0xFF if dlab else self._read_rbr()
        if offset == IER:
            return self.divisor >> 8 if dlab else self.ier
        if offset == IIR:
            return self._read_iir()
        if offset == LCR:
            return self.lcr
        if offset == MCR:
            return self.mcr
        if offset == LSR:
            return self._read_lsr()
        if offset == MSR:
            value = self.msr
            self.msr &= ~MSR_DELTAS
            self._update_irq()
            return value
        return self.scr

    def write(self, offset: int, size: int, value: int) -> None:
        dlab = self.lcr & LCR_DLAB
        if offset == THR:
            if dlab:
                self.divisor = (self.divisor & 0xFF00) | value
            else:
                self._write_thr(value)
        elif offset == IER:
            if dlab:
                self.divisor = (self.divisor & 0x00FF) | (value << 8)
            else:
                self._write_ier(value)
        elif offset == FCR:
            self._write_fcr(value)
        elif offset == LCR:
            self.lcr = value
        elif offset == MCR:
            self._write_mcr(value)
        elif offset == SCR:
            self.scr = value
        # LSR and MSR writes are ignored (factory test only).

    def _read_rbr(self) -> int:
        if self.rx:
            self._rbr = self.rx.popleft()
            self._update_irq()
        return self._rbr

    def _read_lsr(self) -> int:
        value = LSR_THRE | LSR_TEMT
        if self.rx:
            value |= LSR_DR
        if self._overrun:
            value |= LSR_OE
            self._overrun = False  # error bits clear when LSR is read
            self._update_irq()
        return value

    def _read_iir(self) -> int:
        ident = self._interrupt_id()
        if ident == IIR_THRE:
            self._thre_pending = False  # reading IIR acknowledges THR empty
            self._update_irq()
        return ident | (IIR_FIFO_ENABLED if self.fifo_enabled else 0)

    def _write_thr(self, value: int) -> None:
        self._thre_pending = False
        self._update_irq()
        if self.mcr & MCR_LOOP:
            self._receive_byte(value)
        else:
            self.chardev.write(bytes((value,)))
        self._thre_pending = True  # the byte left at once: THR is empty again
        self._update_irq()

    def _write_ier(self, value: int) -> None:
        changed = self.ier ^ value
        self.ier = value & 0x0F
        if changed & IER_THRE:
            # Enabling the THRE interrupt while THR is empty (always, here) raises it.
            self._thre_pending = bool(self.ier & IER_THRE)
            self._update_coalescing()
        self._update_irq()

    def _write_fcr(self, value: int) -> None:
        enable = bool(value & FCR_ENABLE)
        if enable != self.fifo_enabled or value & FCR_CLEAR_RX:
            self.rx.clear()  # changing FCR.0 clears both FIFOs
        self.fifo_enabled = enable
        self.rx_trigger = FCR_TRIGGER_LEVELS[value >> 6]
        self._update_irq()

    def _write_mcr(self, value: int) -> None:
        self.mcr = value & 0x1F
        if self.mcr & MCR_LOOP:
            inputs = ((MSR_CTS if self.mcr & MCR_RTS else 0) | (MSR_DSR if self.mcr & MCR_DTR else 0)
                      | (MSR_RI if self.mcr & MCR_OUT1 else 0) | (MSR_DCD if self.mcr & MCR_OUT2 else 0))
        else:
            inputs = EXTERNAL_MODEM_INPUTS
        self._set_modem_inputs(inputs)

    def _set_modem_inputs(self, inputs: int) -> None:
        old = self.msr
        changed = old ^ inputs
        deltas = old & MSR_DELTAS
        if changed & MSR_CTS:
            deltas |= MSR_DCTS
        if changed & MSR_DSR:
            deltas |= MSR_DDSR
        if old & MSR_RI and not inputs & MSR_RI:
            deltas |= MSR_TERI  # trailing edge of ring indicator
        if changed & MSR_DCD:
            deltas |= MSR_DDCD
        self.msr = (inputs & 0xF0) | deltas
        self._update_irq()

    # --- the outside's side: bytes arriving on the serial line ---------------

    def can_receive(self) -> int:
        """How many bytes ``receive`` accepts now without overrun (none in loopback)."""
        if self.mcr & MCR_LOOP:
            return 0
        return (FIFO_SIZE if self.fifo_enabled else 1) - len(self.rx)

    def receive(self, data: bytes) -> None:
        """Bytes from the line; beyond the FIFO's room they overrun (LSR.OE)."""
        if self.mcr & MCR_LOOP:
            return  # in loopback the serial input is disconnected
        for byte in data:
            self._receive_byte(byte)

    def _receive_byte(self, byte: int) -> None:
        if len(self.rx) >= (FIFO_SIZE if self.fifo_enabled else 1):
            self._overrun = True
            if not self.fifo_enabled:
                self.rx[-1] = byte  # the 16450-mode RBR is overwritten; a full FIFO keeps its bytes
        else:
            self.rx.append(byte)
        self._update_irq()

    # --- interrupt output ----------------------------------------------------

    def _interrupt_id(self) -> int:
        """The highest-priority pending, enabled interrupt, as IIR bits 3:0."""
        if self.ier & IER_RLS and self._overrun:
            return IIR_RLS
        if self.ier & IER_RDA and self.rx:
            if self.fifo_enabled and len(self.rx) < self.rx_trigger:
                return IIR_TIMEOUT
            return IIR_RDA
        if self.ier & IER_THRE and self._thre_pending:
            return IIR_THRE
        if self.ier & IER_MS and self.msr & MSR_DELTAS:
            return IIR_MS
        return IIR_NO_INT

    def _update_irq(self) -> None:
        level = 0 if self._interrupt_id() == IIR_NO_INT else 1
        if level != self._irq_level:
            self._irq_level = level
            self.irq(level)
