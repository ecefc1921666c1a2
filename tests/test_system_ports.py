"""Port 0x92, the POST code port, the reset control register and isa-debugcon."""

import pytest

from devicemodel.address_space import AddressSpace
from devicemodel.devices.debugcon import Debugcon
from devicemodel.devices.system_ports import Port92, PostCodePort, ResetControl


class Capture:
    def __init__(self):
        self.data = bytearray()

    def write(self, data):
        self.data += data


@pytest.fixture
def board():
    class Board:
        pass

    b = Board()
    b.a20 = []
    b.resets = []
    b.console = Capture()
    b.port92 = Port92(set_a20=b.a20.append, request_reset=b.resets.append)
    b.post = PostCodePort()
    b.rcr = ResetControl(request_reset=b.resets.append)
    b.debugcon = Debugcon(b.console)
    b.io = AddressSpace("io", 0x10000)
    for device in (b.port92, b.post, b.rcr, b.debugcon):
        for region in device.regions:
            b.io.add_region(region)
    return b


def test_port92_fast_a20_and_reset(board):
    io = board.io
    assert io.read(0x92, 1) == 0
    io.write(0x92, 1, 0x02)
    assert board.a20 == [1] and io.read(0x92, 1) == 0x02
    assert board.resets == []
    io.write(0x92, 1, 0x03)                   # bit 0 rising: CPU reset
    assert board.resets == [False]
    io.write(0x92, 1, 0x03)                   # no new rising edge
    assert board.resets == [False]
    board.port92.reset()
    assert io.read(0x92, 1) == 0x02           # A20 survives, the reset bit does not
    io.write(0x92, 1, 0x01)
    assert board.resets == [False, False]
    assert board.a20[-1] == 0


def test_post_codes_are_counted(board):
    io = board.io
    assert board.post.count == 0 and board.post.last is None
    for code in (0x01, 0x55, 0xAA):
        io.write(0x80, 1, code)
    assert board.post.count == 3 and board.post.last == 0xAA
    assert io.read(0x80, 1) == 0xFF
    assert io.read(0x80, 2) == 0xFFFF


@pytest.mark.parametrize("value, hard", [(0x06, True), (0x0E, True), (0x04, False)])
def test_reset_control_register_resets(board, value, hard):
    board.io.write(0xCF9, 1, value)
    assert board.resets == [hard]


def test_reset_control_register_keeps_the_reset_type(board):
    io = board.io
    io.write(0xCF9, 1, 0x02)                  # Linux: set the type first ...
    assert io.read(0xCF9, 1) == 0x02 and board.resets == []
    io.write(0xCF9, 1, 0x0B)
    assert io.read(0xCF9, 1) == 0x02          # only SYS_RST is kept
    io.write(0xCF9, 1, 0x06)                  # ... then start the reset
    assert board.resets == [True]
    board.rcr.reset()
    assert io.read(0xCF9, 1) == 0


def test_debugcon_writes_to_its_chardev_and_reads_back_0xe9(board):
    for byte in b"hello\n":
        board.io.write(0xE9, 1, byte)
    assert bytes(board.console.data) == b"hello\n"
    assert board.io.read(0xE9, 1) == 0xE9


def test_debugcon_iobase_and_readback_are_properties():
    console = Capture()
    dev = Debugcon(console, iobase=0x402, readback=0x12)
    io = AddressSpace("io", 0x10000)
    io.add_region(dev.region)
    io.write(0x402, 1, ord("x"))
    assert io.read(0x402, 1) == 0x12 and bytes(console.data) == b"x"
    io.write(0x402, 4, 0x44434241)            # split into bytes: only the first is the device's
    assert bytes(console.data) == b"xA"


def test_save_and_load(board):
    board.io.write(0x92, 1, 0x02)
    board.io.write(0x80, 1, 0x42)
    board.io.write(0xCF9, 1, 0x02)
    states = [d.save_state() for d in (board.port92, board.post, board.rcr)]
    copies = [Port92(), PostCodePort(), ResetControl()]
    for copy, state in zip(copies, states):
        copy.load_state(state)
        assert copy.save_state() == state
