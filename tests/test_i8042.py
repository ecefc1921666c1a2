"""The 8042 keyboard controller with its PS/2 keyboard and mouse, through ports 0x60/0x64."""

import pytest

from devicemodel.address_space import AddressSpace
from devicemodel.devices.i8042 import I8042
from irq_line import Line


class Machine:
    def __init__(self):
        self.irq1 = Line()
        self.irq12 = Line()
        self.a20 = Line()
        self.resets = []
        self.kbc = I8042(irq_kbd=self.irq1, irq_mouse=self.irq12, set_a20=self.a20,
                         request_reset=self.resets.append)
        self.io = AddressSpace("io", 0x10000)
        for region in self.kbc.regions:
            self.io.add_region(region)

    def status(self):
        return self.io.read(0x64, 1)

    def command(self, value, data=None):
        self.io.write(0x64, 1, value)
        if data is not None:
            self.io.write(0x60, 1, data)

    def write(self, value):
        self.io.write(0x60, 1, value)

    def read(self):
        return self.io.read(0x60, 1)

    def drain(self):
        """Read the output buffer while OBF is set, as i8042_flush() does."""
        data = []
        while self.status() & 0x01:
            data.append(self.read())
        return data


@pytest.fixture
def m():
    return Machine()


def test_reset_state(m):
    assert m.status() == 0x18                  # CMD | UNLOCKED
    m.command(0x20)
    assert m.drain() == [0x03]                 # command byte: both interrupts enabled
    m.command(0xD0)
    assert m.drain() == [0xCF]                 # output port: reset high, A20 on


def test_self_test_answers_0x55_with_irq1(m):
    m.command(0xAA)
    assert m.status() & 0x05 == 0x05           # OBF and the system flag
    assert m.irq1.level == 1
    assert m.read() == 0x55
    assert m.irq1.level == 0
    assert m.status() & 0x01 == 0


def test_reading_an_empty_buffer_returns_the_last_byte(m):
    m.command(0xAB)
    assert m.read() == 0x00
    m.command(0xAA)
    assert m.read() == 0x55
    assert m.read() == 0x55


def test_command_byte_write_and_read(m):
    m.command(0x60, 0x65)                      # translate, disable kbd, sys, IRQ1
    m.command(0x20)
    assert m.drain() == [0x65]


def test_interface_tests_and_input_port(m):
    m.command(0xAB)
    assert m.drain() == [0x00]
    m.command(0xA9)
    assert m.drain() == [0x00]
    m.command(0xC0)
    assert m.drain() == [0x80]


def test_status_cmd_bit_follows_the_last_write(m):
    m.command(0x60)
    assert m.status() & 0x08
    m.write(0x03)
    assert not m.status() & 0x08


def test_a20_through_the_output_port_and_the_hp_commands(m):
    m.command(0xD1, 0xDD)                      # A20 off, reset high
    assert m.a20.level == 0 and m.kbc.a20 == 0
    m.command(0xD0)
    assert m.drain() == [0xDD]
    m.command(0xD1, 0xDF)
    assert m.a20.level == 1
    m.command(0xDD)
    assert m.a20.levels[-1] == 0
    m.command(0xDF)
    assert m.a20.levels[-1] == 1
    assert m.resets == []


def test_cpu_reset(m):
    m.command(0xFE)
    assert m.resets == [False]                 # a soft reset: the CPU's reset line
    m.command(0xFF)                            # pulse nothing
    m.command(0xF3)                            # pulse bits 2, 3: bit 0 untouched
    assert m.resets == [False]
    m.command(0xF0)                            # pulse bits 0..3
    m.command(0xD1, 0xCE)                      # output port bit 0 low
    assert m.resets == [False, False, False]


def test_keyboard_reset_replies_ack_then_bat_ok(m):
    m.write(0xFF)
    assert m.irq1.level == 1
    assert m.read() == 0xFA
    assert m.irq1.level == 1                   # the next byte is there at once ...
    assert m.irq1.levels[-3:] == [1, 0, 1]     # ... with a new edge for the PIC
    assert m.read() == 0xAA
    assert m.irq1.level == 0


def test_keyboard_identify_leds_and_scancode_set(m):
    m.write(0xF2)
    assert m.drain() == [0xFA, 0xAB, 0x83]     # MF2 keyboard, untranslated
    m.write(0xED)
    assert m.drain() == [0xFA]
    m.write(0x07)
    assert m.drain() == [0xFA]
    assert m.kbc.keyboard.leds == 0x07
    m.write(0xF0)
    m.write(0x00)
    assert m.drain() == [0xFA, 0x02]           # the next command drops an unread reply
    m.write(0xF0)
    m.write(0x01)
    m.write(0xF0)
    m.write(0x00)
    assert m.drain() == [0xFA, 0x01]
    m.command(0x60, 0x43)                      # translation on
    m.write(0xF2)
    assert m.drain() == [0xFA, 0xAB, 0x41]
    m.write(0xF0)
    m.write(0x00)
    assert m.drain() == [0xFA, 0x43]           # set 1, as the translated byte
    m.write(0x77)
    assert m.drain() == [0xFE]                 # unknown: resend
    m.write(0xEE)
    assert m.drain() == [0xEE]                 # echo


def test_keys_in_set_2_untranslated(m):
    m.kbc.send_key(0x1E, True)                 # A
    m.kbc.send_key(0x1E, False)
    m.kbc.send_key(0x9D, True)                 # right Ctrl (0xe0 0x1d in set 1)
    m.kbc.send_key(0x9D, False)
    m.kbc.send_key(0x41, True)                 # F7: 0x83 in set 2
    assert m.drain() == [0x1C, 0xF0, 0x1C, 0xE0, 0x14, 0xE0, 0xF0, 0x14, 0x83]


def test_keys_in_set_2_translated_to_set_1(m):
    m.command(0x60, 0x43)
    for code in (0x1E, 0x9D, 0x41, 0x01):
        m.kbc.send_key(code, True)
        m.kbc.send_key(code, False)
    assert m.drain() == [0x1E, 0x9E, 0xE0, 0x1D, 0xE0, 0x9D, 0x41, 0xC1, 0x01, 0x81]


def test_keys_in_set_1(m):
    m.write(0xF0)
    m.write(0x01)
    m.drain()
    m.kbc.send_key(0x9C, True)                 # keypad Enter
    m.kbc.send_key(0x9C, False)
    assert m.drain() == [0xE0, 0x1C, 0xE0, 0x9C]
    m.write(0xF0)
    m.write(0x03)
    m.drain()
    m.kbc.send_key(0x1E, True)                 # set 3 is not emulated: no bytes
    assert m.drain() == []


def test_scanning_disabled_drops_keys(m):
    m.write(0xF5)
    assert m.drain() == [0xFA]
    m.kbc.send_key(0x1E, True)
    assert m.drain() == []
    m.write(0xF4)
    assert m.drain() == [0xFA]
    m.kbc.send_key(0x1E, True)
    assert m.drain() == [0x1C]


def test_disabled_keyboard_interface_holds_data(m):
    m.command(0xAD)
    m.kbc.send_key(0x1E, True)
    assert m.status() & 0x01 == 0 and m.irq1.level == 0
    m.command(0xAE)
    assert m.irq1.level == 1
    assert m.drain() == [0x1C]
    m.command(0xAD)
    m.kbc.send_key(0x1E, False)
    m.write(0xF4)                              # writing to the keyboard enables it again
    assert m.drain() == [0xFA, 0xF0, 0x1C]


def test_irq1_follows_the_command_byte_enable(m):
    m.command(0x60, 0x00)
    m.kbc.send_key(0x1E, True)
    assert m.status() & 0x01 and m.irq1.level == 0
    m.command(0x60, 0x01)
    assert m.irq1.level == 1


def test_the_keyboard_queue_holds_16_bytes(m):
    for _ in range(20):
        m.kbc.send_key(0x1E, True)
    assert len(m.drain()) == 16


def test_controller_replies_come_before_queued_keys(m):
    m.command(0xAD)
    m.kbc.send_key(0x1E, True)
    m.kbc.send_key(0x30, True)
    m.command(0xAA)
    m.command(0xAE)
    assert m.drain() == [0x55, 0x1C, 0x32]


def test_a_byte_in_the_output_buffer_stays_ahead_of_a_controller_reply(m):
    m.kbc.send_key(0x1E, True)
    m.command(0xAA)
    assert m.drain() == [0x1C, 0x55]


def test_aux_output_buffer_write_raises_irq12(m):
    m.command(0xD3, 0x5A)                      # as Linux's i8042_check_aux()
    assert m.status() & 0x21 == 0x21           # OBF | AUX OBF
    assert m.irq12.level == 1 and m.irq1.level == 0
    assert m.read() == 0x5A
    assert m.irq12.level == 0
    m.command(0xD2, 0xA5)                      # "from the keyboard"
    assert m.status() & 0x21 == 0x01 and m.irq1.level == 1
    assert m.read() == 0xA5


def test_mouse_commands_through_d4(m):
    m.command(0xD4, 0xFF)                      # reset
    assert m.irq12.level == 1
    assert m.drain() == [0xFA, 0xAA, 0x00]
    m.command(0xD4, 0xF2)                      # get device ID
    assert m.drain() == [0xFA, 0x00]
    m.command(0xD4, 0xF3)
    m.command(0xD4, 200)                       # sample rate
    m.command(0xD4, 0xF4)                      # enable
    m.command(0xD4, 0xE9)                      # status request
    assert m.drain() == [0xFA, 0xFA, 0xFA, 0xFA, 0x20, 0x02, 200]
    m.command(0xD4, 0xEE)                      # wrap mode echoes
    m.command(0xD4, 0x12)
    m.command(0xD4, 0xEC)
    assert m.drain() == [0xFA, 0x12, 0xFA]


def test_disabled_mouse_interface_holds_its_data(m):
    m.command(0xA7)
    m.command(0xD4, 0xF2)                      # talking to the mouse enables it again
    assert m.drain() == [0xFA, 0x00]
    m.command(0xA7)
    m.kbc.mouse.queue_bytes(0x08, 0x00, 0x00)
    assert m.status() & 0x01 == 0
    m.command(0xA8)
    assert m.drain() == [0x08, 0x00, 0x00]


def test_linux_i8042_probe_sequence(m):
    """i8042_controller_check/selftest/init, i8042_check_aux, then atkbd's probe."""
    assert m.drain() == []
    m.command(0xAA)
    assert m.drain() == [0x55]
    m.command(0x20)
    ctr = m.drain()[0]
    m.command(0x60, (ctr | 0x30) & ~0x03)      # both ports disabled, no interrupts
    m.command(0xA8)                            # enable AUX
    m.command(0xD3, 0xA5)                      # AUX loopback
    assert m.drain() == [0xA5]
    m.command(0x60, 0x47)                      # translate, both interrupts, sys flag
    m.write(0xF2)
    assert m.drain() == [0xFA, 0xAB, 0x41]
    m.write(0xFF)
    assert m.drain() == [0xFA, 0xAA]
    m.write(0xF4)
    assert m.drain() == [0xFA]


def test_reset_restores_the_defaults(m):
    m.command(0x60, 0x40)
    m.kbc.send_key(0x1E, True)
    m.kbc.reset()
    assert m.status() == 0x18 and m.irq1.level == 0
    m.command(0x20)
    assert m.drain() == [0x03]


def test_save_and_load_state(m):
    m.command(0x60, 0x43)
    m.kbc.send_key(0x1E, True)
    m.kbc.send_key(0x1E, False)
    m.command(0xD4, 0xF2)
    state = m.kbc.save_state()
    copy = Machine()
    copy.kbc.load_state(state)
    assert copy.kbc.save_state() == state
    assert copy.drain() == m.drain()
