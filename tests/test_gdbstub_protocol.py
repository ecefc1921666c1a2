"""The gdbstub's GDB remote serial protocol, packet by packet: framing, checksums and
acknowledgments, QStartNoAckMode, the target description, registers, memory,
breakpoints, watchpoints, stepping, Ctrl-C, threads, detach and kill, and bad input
that must get error or empty replies while the VM keeps working."""

import re
import socket
import time

import pytest

from devicemodel.gdbstub.debugger import aligned_pieces
from devicemodel.gdbstub.packets import (BadPacket, Interrupt, Packet, PacketReader, checksum,
                                         escape_binary, frame, unescape_binary)
from devicemodel.gdbstub.spec import parse_gdb_spec
from devicemodel.cli import HELP, main, parse_command_line
from devicemodel.errors import ConfigError
from devicemodel.runstate import PAUSED
from gdb_remote import GdbMachine, RspClient, symbols
from guests import exit_status, guest_path

GDBTEST_EXIT = exit_status(0x42)
EIP, EFLAGS = 8, 9          # i386 register numbers


# ---- framing ---------------------------------------------------------------------------------

def test_frame_and_checksum():
    assert frame(b"OK") == b"$OK#9a"
    assert checksum(b"") == 0 and frame(b"") == b"$#00"


def test_reader_reassembles_packets_split_anywhere_and_skips_acks():
    reader = PacketReader()
    events = []
    for chunk in (b"+$qSupp", b"orted#37", b"+", b"-$g#6", b"7\x03$m0,4#fd"):
        events += reader.feed(chunk)
    assert events == [Packet(b"qSupported"), Packet(b"g"), Interrupt(), Packet(b"m0,4")]


def test_reader_reports_bad_checksums_and_drops_oversized_packets():
    reader = PacketReader()
    assert [type(e) for e in reader.feed(b"$g#00$g#zz")] == [BadPacket, BadPacket]
    events = list(reader.feed(b"$" + b"a" * 20000 + b"#00$?#3f"))
    assert isinstance(events[0], BadPacket) and events[-1] == Packet(b"?")


def test_binary_escapes_round_trip():
    data = bytes(range(256))
    escaped = escape_binary(data)
    assert b"#" not in escaped and b"$" not in escaped and b"*" not in escaped
    assert unescape_binary(escaped) == data


def test_gdb_spec():
    assert parse_gdb_spec("tcp::1234") == ("", 1234)
    assert parse_gdb_spec("tcp:localhost:4321,server,nowait") == ("localhost", 4321)
    assert parse_gdb_spec("tcp:[::1]:99") == ("::1", 99)
    assert parse_gdb_spec("none") is None
    for bad in ("1234", "udp::1", "tcp:host", "tcp::99999", "tcp::x"):
        with pytest.raises(ConfigError):
            parse_gdb_spec(bad)


def test_watched_ranges_split_into_aligned_pieces():
    assert aligned_pieces(0x1000, 4) == [(0x1000, 4)]
    assert aligned_pieces(0x1003, 6) == [(0x1003, 1), (0x1004, 4), (0x1008, 1)]
    assert aligned_pieces(0x1000, 16) == [(0x1000, 8), (0x1008, 8)]


# ---- against a VM ----------------------------------------------------------------------------

@pytest.fixture
def vm(firmware_dir, tmp_path):
    machines = []

    def start(kernel="gdbtest", **kwargs):
        m = GdbMachine(guest_path(kernel), tmp_path, **kwargs)
        machines.append(m)
        return m
    yield start
    for m in machines:
        m.close()


@pytest.fixture
def gdbtest(vm):
    m = vm()
    client = RspClient(m.port)
    yield m, client, symbols(guest_path("gdbtest"))
    client.close()


def le32(hexdata: bytes) -> int:
    return int.from_bytes(bytes.fromhex(hexdata.decode()), "little")


def test_session_start(gdbtest):
    m, c, _ = gdbtest
    supported = c.command("qSupported:multiprocess+;swbreak+;hwbreak+;xmlRegisters=i386")
    assert b"PacketSize=4000" in supported and b"qXfer:features:read+" in supported
    assert b"swbreak+" in supported and b"QStartNoAckMode+" in supported
    assert c.command("?") == b"T05thread:1;"
    assert c.command("qC") == b"QC1"
    assert c.command("qfThreadInfo") == b"m1" and c.command("qsThreadInfo") == b"l"
    assert c.command("qAttached") == b"1"
    assert c.command("vCont?") == b"vCont;c;C;s;S"
    xml, offset = b"", 0
    while True:
        chunk = c.command(f"qXfer:features:read:target.xml:{offset:x},100")
        xml += chunk[1:]
        offset += len(chunk) - 1
        if chunk[:1] == b"l":
            break
        assert chunk[:1] == b"m"
    assert b"<architecture>i386</architecture>" in xml and xml.rstrip().endswith(b"</target>")
    assert xml.count(b"<reg ") == 39
    assert m.machine.runstate.status == "prelaunch"


def test_registers_and_memory(gdbtest):
    m, c, sym = gdbtest
    regs = c.command("g")
    assert len(regs) == 2 * (16 * 4 + 8 * 10 + 8 * 4 + 6 * 4 + 8)
    assert le32(regs[EIP * 8:EIP * 8 + 8]) == m.machine.vcpus[0].get_regs().rip
    assert b"xx" * 10 in regs                       # st0: unavailable
    assert c.command("p8") == regs[64:72]
    assert c.command("P0=78563412") == b"OK"        # eax
    assert m.machine.vcpus[0].get_regs().rax == 0x12345678
    assert c.command("p0") == b"78563412"
    squares = sym["squares"]
    assert c.command(f"M{squares:x},4:01020304") == b"OK"
    assert c.command(f"m{squares:x},4") == b"01020304"
    assert c.command(f"X{squares:x},3:\x7d\x03ab") == b"OK"       # escaped '#'... 0x23
    assert c.command(f"m{squares:x},4") == b"23616204"
    assert c.command(f"X{squares:x},0:") == b"OK"
    # memory that is not RAM, or past the end of the guest's memory
    assert c.command("m7fffffff,4") == b"E14"


def test_malformed_and_unknown_packets_leave_the_vm_working(gdbtest):
    m, c, _ = gdbtest
    for bad in ("mzz,4", "m", "Mzz", "Z0,zz,1", "p ffff", "pfff", "P0=12", "Hgff", "Hx1",
                "Gzz", "qXfer:features:read:target.xml:zz", "Tffff", "vCont;q", "vCont;s:9"):
        assert c.command(bad).startswith(b"E"), bad
    for unknown in ("qFooBar", "vFoo", "!", "jxyz", "QNonStop:1"):
        assert c.command(unknown) == b"", unknown
    assert c.command("qXfer:features:read:other.xml:0,10") == b"E00"
    c.send_packet(b"g", checksum=0)                  # a bad checksum is asked for again
    assert c.read_ack() == b"-"
    assert len(c.command("g")) > 100
    c.resume("c")
    assert c.read_packet() == b"W%02x" % GDBTEST_EXIT
    assert m.wait() == GDBTEST_EXIT
    assert "total=140" in m.output()


def test_no_ack_mode(gdbtest):
    m, c, _ = gdbtest
    assert c.command("QStartNoAckMode") == b"OK"
    c.acks = False
    c.send_packet(b"?")
    assert c.read_packet() == b"T05thread:1;"       # no '+' before it


def test_software_breakpoint_step_and_watchpoint(gdbtest):
    m, c, sym = gdbtest
    add_squares, counter = sym["add_squares"], sym["counter"]
    assert c.command(f"Z0,{add_squares:x},1") == b"OK"
    assert m.machine.vm.read_guest(add_squares, 1) == b"\xcc"      # in the guest's memory...
    assert c.command(f"m{add_squares:x},1") == b"55"               # ...not in gdb's view
    c.resume("vCont;c")
    assert c.read_packet() == b"T05thread:1;swbreak:;"
    assert m.machine.runstate.status == "debug"
    assert le32(c.command(f"p{EIP:x}")) == add_squares
    assert c.command(f"z0,{add_squares:x},1") == b"OK"
    assert m.machine.vm.read_guest(add_squares, 1) == b"\x55"
    c.resume("vCont;s:1")
    assert c.read_packet() == b"T05thread:1;"
    assert le32(c.command(f"p{EIP:x}")) == add_squares + 1         # push ebp stepped
    assert c.command(f"Z2,{counter:x},4") == b"OK"
    c.resume("c")
    assert c.read_packet() == b"T05thread:1;watch:%x;" % counter
    assert c.command(f"m{counter:x},4") == b"01000000"             # after the write
    assert c.command(f"z2,{counter:x},4") == b"OK"
    assert c.command(f"Z1,{sym['square']:x},1") == b"OK"
    c.resume("c")
    assert c.read_packet() == b"T05thread:1;hwbreak:;"
    assert le32(c.command(f"p{EIP:x}")) == sym["square"]
    assert c.command(f"z1,{sym['square']:x},1") == b"OK"
    assert c.command(f"Z4,{counter:x},4") == b"OK"
    c.resume("c")
    assert c.read_packet() == b"T05thread:1;awatch:%x;" % counter
    c.resume("D")
    assert c.read_packet() == b"OK"
    assert m.wait() == GDBTEST_EXIT                                 # nothing left behind
    assert "total=140 counter=8" in m.output()


def test_more_watchpoints_than_debug_registers_are_refused(gdbtest):
    m, c, sym = gdbtest
    base = sym["squares"]
    assert c.command(f"Z2,{base:x},18") == b"OK"        # 24 bytes: 8 + 8 + 8
    assert c.command(f"Z2,{base + 0x18:x},8") == b"OK"  # the fourth register
    assert c.command(f"Z1,{sym['square']:x},1") == b"E22"
    assert c.command(f"z2,{base:x},18") == b"OK"
    assert c.command(f"Z1,{sym['square']:x},1") == b"OK"
    assert c.command(f"z3,{base:x},4") == b"E22"        # not inserted


def test_kill_ends_the_vm(gdbtest):
    m, c, _ = gdbtest
    c.resume("k")
    assert m.wait() == 0


def test_ctrl_c_stops_a_running_vm(vm):
    m = vm("bench32", cmdline="iterations=1000000000")
    c = RspClient(m.port)
    c.resume("c")
    time.sleep(0.3)
    assert m.machine.runstate.status == "running"
    c.sock.sendall(b"\x03")
    assert c.read_packet() == b"T02thread:1;"
    assert m.machine.runstate.status == PAUSED
    rip = m.machine.vcpus[0].get_regs().rip
    time.sleep(0.1)
    assert m.machine.vcpus[0].get_regs().rip == rip
    assert le32(c.command(f"p{EIP:x}")) == rip
    c.resume("D")
    assert c.read_packet() == b"OK"
    time.sleep(0.1)
    assert m.machine.runstate.status == "running"
    c.close()


def test_threads_are_vcpus(vm):
    m = vm(cpus=2)
    c = RspClient(m.port)
    assert c.command("qfThreadInfo") == b"m1,2"
    assert c.command("T2") == b"OK" and c.command("T3") == b"E22"
    assert c.command("Hg2") == b"OK"
    assert c.command("qC") == b"QC2"
    info = bytes.fromhex(c.command("qThreadExtraInfo,2").decode())
    assert info == b"CPU#1 [halted]"                    # an AP waiting for its SIPI
    assert c.command("Hg1") == b"OK"
    assert bytes.fromhex(c.command("qThreadExtraInfo,1").decode()) == b"CPU#0 [running]"
    c.close()


# ---- the command line ---------------------------------------------------------------------

def test_command_line_options(firmware_dir):
    kernel = str(guest_path("gdbtest"))
    assert parse_command_line(["-kernel", kernel, "-s"]).gdb == "tcp::1234"
    assert parse_command_line(["-kernel", kernel, "-gdb", "tcp:localhost:4321"]).gdb == "tcp:localhost:4321"
    assert parse_command_line(["-kernel", kernel]).gdb is None
    with pytest.raises(ConfigError, match=re.escape("-gdb stdio: 'stdio' is not a gdb socket")):
        parse_command_line(["-kernel", kernel, "-gdb", "stdio"])
    assert "-gdb dev" in HELP and "-s " in HELP


def test_busy_port_is_a_one_line_startup_error(capsys, firmware_dir):
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        status = main(["-kernel", str(guest_path("gdbtest")), "-serial", "null", "-gdb", f"tcp:127.0.0.1:{port}"])
    err = capsys.readouterr().err
    assert status == 1
    assert err == f"pyhv: -gdb tcp:127.0.0.1:{port}: Failed to bind socket: Address already in use\n"


def test_gdb_going_away_leaves_no_breakpoint_behind(gdbtest):
    m, c, sym = gdbtest
    assert c.command(f"Z0,{sym['square']:x},1") == b"OK"
    assert c.command(f"Z2,{sym['counter']:x},4") == b"OK"
    c.resume("c")
    assert c.read_packet().startswith(b"T05")
    c.close()                                           # no detach
    assert m.wait() == GDBTEST_EXIT
    assert "total=140 counter=8" in m.output()
    assert m.machine.vm.read_guest(sym["square"], 1) == b"\x55"
