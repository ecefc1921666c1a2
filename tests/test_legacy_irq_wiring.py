"""The PIT and the RTC wired to the PIC pair, with a vCPU-like loop that takes
interrupts through acknowledge() and ends them with EOIs, as a guest kernel would."""

from devicemodel.address_space import AddressSpace
from devicemodel.clock import NS_PER_SEC, VirtualClock
from devicemodel.devices.i8254 import I8254
from devicemodel.devices.i8259 import PicPair
from devicemodel.devices.mc146818 import MC146818, rtc_start_time


def test_timer_and_rtc_interrupts_arrive_as_vectors():
    clock = VirtualClock()
    pic = PicPair()
    pit = I8254(clock, irq=lambda level: pic.set_irq(0, level))
    rtc = MC146818(clock, irq=lambda level: pic.set_irq(8, level),
                   start_time=rtc_start_time("2020-01-01"))
    io = AddressSpace("io", 0x10000)
    for device in (pic, pit, rtc):
        for region in device.regions:
            io.add_region(region)

    def outb(port, value):
        io.write(port, 1, value)

    for port, value in ((0x20, 0x11), (0x21, 0x20), (0x21, 0x04), (0x21, 0x01),
                        (0xA0, 0x11), (0xA1, 0x28), (0xA1, 0x02), (0xA1, 0x01),
                        (0x21, 0x00), (0xA1, 0x00)):
        outb(port, value)
    outb(0x43, 0x34)                       # PIT counter 0, mode 2, 1000 Hz
    outb(0x40, 1193 & 0xFF)
    outb(0x40, 1193 >> 8)
    outb(0x70, 0x0A)
    outb(0x71, 0x2A)                       # RTC periodic at 64 Hz
    outb(0x70, 0x0B)
    outb(0x71, 0x42)                       # PIE

    vectors = []
    end = NS_PER_SEC // 4
    while clock.now_ns() < end:
        clock.advance(50_000)              # the guest runs for 50 us between exits
        while pic.has_interrupt():
            vector = pic.acknowledge()
            vectors.append(vector)
            if vector == 0x28:             # the RTC handler reads register C ...
                outb(0x70, 0x0C)
                io.read(0x71, 1)
                outb(0xA0, 0x20)           # ... and EOIs the slave, then the master
            outb(0x20, 0x20)

    assert vectors.count(0x20) == 250      # 1193 / 1193182 s per tick, for 0.25 s
    assert vectors.count(0x28) == 16       # 64 Hz for 0.25 s
    assert set(vectors) == {0x20, 0x28}
