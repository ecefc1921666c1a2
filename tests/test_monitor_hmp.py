"""The human monitor against a running guest (firmware/kernels/steer.c): commands,
QEMU's output formats, pyhv's VMX windows, and bad input that must not hurt the VM."""

import re
import shutil
import struct
import subprocess

import pytest

import guests
from monitor_client import PyhvProcess

ALIAS = 0xC0000000        # steer maps the first 4 MiB here too


@pytest.fixture(scope="module")
def vm(firmware_dir, tmp_path_factory):
    process = PyhvProcess(tmp_path_factory.mktemp("hmp"), guests.guest_path("steer", firmware_dir))
    process.wait_serial("steer: ready")
    yield process
    process.stop()


@pytest.fixture
def hmp(vm):
    client = vm.hmp()
    yield client
    client.close()


def test_banner_status_and_simple_info(hmp):
    assert hmp.banner.startswith("pyhv ") and "monitor - type 'help' for more information" in hmp.banner
    assert hmp.cmd("info status") == "VM status: running\n"
    assert hmp.cmd("info kvm") == "kvm support: enabled\n"
    assert re.fullmatch(r"\d+\.\d+\.\d+ \(pyhv\)\n", hmp.cmd("info version"))
    assert re.fullmatch(r"\* CPU #0: thread_id=\d+\n", hmp.cmd("info cpus"))
    chardevs = hmp.cmd("info chardev")
    assert "serial0: filename=file" in chardevs
    assert re.search(r"compat_monitor0: filename=unix:\S+monitor.sock,server=on <-> ", chardevs)


def test_stop_and_cont(hmp):
    assert hmp.cmd("stop") == ""
    assert hmp.cmd("info status") == "VM status: paused\n"
    first = hmp.cmd("info registers")
    assert hmp.cmd("info registers") == first      # nothing runs while paused
    assert hmp.cmd("c") == ""
    assert hmp.cmd("info status") == "VM status: running\n"


def test_info_registers_layout(hmp):
    lines = hmp.cmd("info registers").split("\n")
    assert lines[:2] == ["", "CPU#0"]
    assert re.fullmatch(r"EAX=[0-9a-f]{8} EBX=[0-9a-f]{8} ECX=[0-9a-f]{8} EDX=[0-9a-f]{8}", lines[2])
    assert re.fullmatch(r"EIP=[0-9a-f]{8} EFL=[0-9a-f]{8} \[[-DOSZAPC]{7}\] CPL=0 II=[01] A20=1 SMM=0 HLT=0",
                        lines[4])
    assert re.fullmatch(r"CS =0010 00000000 ffffffff 00cf9b00 DPL=0 CS32 \[-R[-A]\]", lines[6])
    assert lines[15].startswith("CR0=80000011 ") and "CR4=00000010" in lines[15]
    assert lines[18] == "EFER=0000000000000000"
    assert lines[19].startswith("FCW=") and lines[-2].startswith("XMM06=")
    assert hmp.cmd("info registers -a").startswith("\nCPU#0\n")


def test_xp_and_x_through_the_guest_page_tables(hmp, vm, firmware_dir):
    header = guests.guest_path("steer", firmware_dir).read_bytes()
    offset = header.find(struct.pack("<I", 0x1BADB002))
    words = struct.unpack("<4I", header[offset:offset + 16])
    expected = "0000000000100000: " + " ".join(f"0x{w:08x}" for w in words) + "\n"
    assert hmp.cmd("xp /4xw 0x100000") == expected
    assert hmp.cmd(f"x /4xw {ALIAS + 0x100000:#x}") == expected.replace("0000000000100000", f"{ALIAS + 0x100000:016x}")
    assert hmp.cmd(f"gva2gpa {ALIAS + 0x100004:#x}") == "gpa: 0x100004\n"
    assert hmp.cmd("gva2gpa 0x80000000") == "Unmapped\n"
    assert hmp.cmd("x /2x 0x80000000") == "0000000080000000: Cannot access memory\n"
    assert hmp.cmd("xp /2x 0x100000000") == "0000000100000000: Cannot access memory\n"
    assert hmp.cmd("xp /2c 0x100000") == "0000000000100000: '\\x02' '\\xb0'\n"
    # the format is remembered, as in QEMU: the next xp without /fmt dumps one byte as char
    assert hmp.cmd("xp 0x100001") == "0000000000100001: '\\xb0'\n"


def test_print_and_registers_in_expressions(hmp):
    assert hmp.cmd("p /x 0x10 + 2 * 3") == "0x16\n"
    assert hmp.cmd("print /d 7 - 9") == "-2\n"
    assert re.fullmatch(r"0x10[0-9a-f]{4}\n", hmp.cmd("p /x $pc"))


def test_disassembly(hmp):
    pytest.importorskip("capstone")
    lines = hmp.cmd("x /3i $pc").splitlines()
    assert len(lines) == 3
    for line in lines:
        assert re.fullmatch(r"0x[0-9a-f]{8}:  ([0-9a-f]{2} )+ +[a-z]+ *.*", line), line


def test_info_mem_tlb_mtree_pic_irq_roms_qtree(hmp):
    assert hmp.cmd("info mem") == ("0000000000000000-0000000001000000 0000000001000000 -rw\n"
                                   "00000000c0000000-00000000c0400000 0000000000400000 -rw\n")
    tlb = hmp.cmd("info tlb").splitlines()
    assert tlb[0].startswith("0000000000000000: 0000000000000000 --P") and tlb[-1].startswith(
        "00000000c0000000: 0000000000000000 --P")
    mtree = hmp.cmd("info mtree")
    assert "address-space: I/O" in mtree and "(prio 0, i/o): serial0" in mtree
    assert "0000000000000000-0000000007ffffff (prio 0, ram): pc.ram" in mtree
    assert hmp.cmd("info mtree -f").startswith("FlatView #0\n AS \"I/O\", root: io")
    assert re.fullmatch(r"pic1: irr=.. imr=.. isr=.. hprio=\d irq_base=.. rr_sel=\d elcr=.. fnm=\d\n"
                        r"pic0: .*\nioapic0: ver=0x20 id=0x00 sel=0x..( \(redir\[\d+\]\))?\n"
                        r"(  pin \d+ +0x[0-9a-f]{16} dest=[0-9a-f]+ vec=\d+ +active-(hi|lo) .*\n){24}"
                        r"  IRR +.*\n  Remote IRR .*\n", hmp.cmd("info pic"))
    assert hmp.cmd("info irq").startswith("IRQ statistics for isa-i8259:\n 0: ")
    assert 'addr=0000000000100000 size=0x' in hmp.cmd("info roms")
    qtree = hmp.cmd("info qtree")
    assert 'dev: serial0, id ""' in qtree and "iobase = 1016 (0x3f8)" in qtree
    lapic = hmp.cmd("info lapic")
    assert lapic.startswith("dumping local APIC state for CPU 0 \n\nLVT0\t 0x")
    assert "SPIV\t 0x000001ff APIC enabled" in lapic and "\nAPR 0x00 TPR 0x" in lapic


def test_pyhv_windows_onto_vmx(hmp):
    vmcs = hmp.cmd("info vmcs")
    assert vmcs.startswith("VMCS of vCPU 0")
    assert re.search(r"VM_EXIT_REASON +\(0x4402\) = 0000001e  IO_INSTRUCTION|VM_EXIT_REASON +\(0x4402\) = [0-9a-f]+  [A-Z_]+", vmcs)
    assert re.search(r"GUEST_CS_AR_BYTES +\(0x4816\) = 0000c09b  type=0xb code DPL=0 P D/B G", vmcs)
    assert "SECONDARY_EXEC_ENABLE_EPT" in vmcs and "GUEST_CR0" in vmcs
    ept = hmp.cmd("info ept 0x100000").splitlines()
    assert [line.split()[0] for line in ept[1:5]] == ["PML4E", "PDPTE", "PDE", "PTE"]
    assert "rwx" in ept[4] and ept[5].startswith("guest-physical 0x100000 -> host-physical ")
    assert "not RAM" in hmp.cmd("info ept 0xfec00000")
    # the local APIC's page is the APIC-access page of APIC virtualization
    apic_access = re.search(r"APIC_ACCESS_ADDR +\(0x2014\) = ([0-9a-f]+)", vmcs)
    assert apic_access and hmp.cmd("info ept 0xfee00000").endswith(
        f"guest-physical 0xfee00000 -> host-physical {int(apic_access.group(1), 16):#x} (rwx)\n")
    exits = hmp.cmd("info exits")
    assert "VM exits of the VM" in exits and "VM exits of vCPU 0" in exits
    assert re.search(r"IO_INSTRUCTION +\d+ +\d+\.\d% ", exits)
    vmx = hmp.cmd("info vmx")
    assert "VMCS revision" in vmx and "PIN_BASED_EXT_INTR_MASK" in vmx and "EPT_VIOLATION" in vmx


def test_info_jit_counts_the_blocks_the_guest_ran(hmp):
    report = hmp.cmd("info jit")
    size, capacity = map(int, re.search(r"^gen code size +(\d+)/(\d+)$", report, re.M).groups())
    compiled, decoded, threshold = map(int, re.search(
        r"^TB count +(\d+) compiled of (\d+) decoded \(compiled at a block's run (\d+)\)$", report, re.M).groups())
    # steer's loops have run: some blocks were hot enough to compile, and took code
    assert threshold == 16 and 0 < compiled <= decoded and 0 < size < capacity
    average, largest = map(int, re.search(r"^TB avg target size +(\d+) max=(\d+) bytes$", report, re.M).groups())
    assert 0 < average <= largest
    assert re.search(r"^TB avg host size +\d+ bytes \(expansion ratio: \d+\.\d\)$", report, re.M)
    assert re.search(r"^Statistics:\nTB flush count +0\nTB invalidate count +\d+$", report, re.M)
    later = hmp.cmd("info jit")
    assert int(re.search(r"^TB count +(\d+)", later, re.M).group(1)) >= compiled


def test_help(hmp):
    assert hmp.cmd("help x") == "x /fmt addr -- virtual memory dump starting at 'addr'\n"
    assert hmp.cmd("help cont") == "cont|c  -- resume emulation\n"
    assert "info registers [-a|vcpu] -- show the cpu registers" in hmp.cmd("help info")
    everything = hmp.cmd("help")
    for name in ("dump-guest-memory", "sendkey", "system_reset", "gva2gpa", "trace"):
        assert f"\n{name} " in everything
    history = hmp.cmd("info history").splitlines()
    assert re.fullmatch(r"\d+: 'help x'", history[-5]) and re.fullmatch(r"\d+: 'info history'", history[-1])


@pytest.mark.parametrize("line, reply", [
    ("foo", "unknown command: 'foo'\n"),
    ("info foo", "unknown command: 'info foo'\n"),
    ("help foo", "unknown command: 'foo'\n"),
    ("xp /z 0", "invalid char in format: 'z'\nTry \"help xp\" for more information\n"),
    ("xp", "unexpected end of expression\nTry \"help xp\" for more information\n"),
    ("xp 0x1000 junk", "xp: extraneous characters at the end of line\nTry \"help xp\" for more information\n"),
    ("cpu 5", "invalid CPU index\n"),
    ("cpu", "unexpected end of expression\nTry \"help cpu\" for more information\n"),
    ("log", "log: string expected\nTry \"help log\" for more information\n"),
    ("stop now", "stop: extraneous characters at the end of line\nTry \"help stop\" for more information\n"),
    ("sendkey foo", "invalid parameter: foo\n"),
    ("p $nosuchreg", "unknown register 'nosuchreg'\nTry \"help print\" for more information\n"),
    ("p 1/0", "division by zero\n"),
    ("trace exits maybe", "trace: expected 'on' or 'off'\n"),
    ("info registers 9", "CPU#9 not available\n"),
    ("pmemsave 0x7fff000 0x2000 \"/tmp/never-written\"",
     "Invalid addr 0x0000000007fff000/size 8192 specified\n"),
    ("memsave 0x80000000 16 \"/tmp/never-written\"", "Invalid addr 0x0000000080000000/size 16 specified\n"),
    ("pmemsave 0 16 \"/no/such/dir/file\"", "Could not open '/no/such/dir/file': No such file or directory\n"),
    ("dump-guest-memory -z \"/tmp/x\"", "dump-guest-memory: -z is not supported by pyhv\n"),
])
def test_bad_input_gets_qemu_style_errors_and_the_vm_runs_on(hmp, vm, line, reply):
    polls = hmp.cmd("xp /1xw 0x100000")
    assert hmp.cmd(line) == reply
    assert hmp.cmd("info status") == "VM status: running\n"
    assert hmp.cmd("xp /1xw 0x100000") == polls
    assert vm.proc.poll() is None


def test_sendkey_reaches_the_guest_through_the_i8042(hmp, vm):
    before = vm.serial_text().count("key 0x1e")
    assert hmp.cmd("sendkey a") == ""
    text = vm.wait_serial("key 0x9e", count=before + 1)
    assert text.count("key 0x1e") == before + 1
    assert hmp.cmd("sendkey shift-b 10") == ""
    vm.wait_serial("key 0xaa")           # shift released last
    assert "key 0x2a\nkey 0x30\nkey 0xb0\nkey 0xaa" in vm.serial_text()


def test_memsave_and_pmemsave(hmp, tmp_path):
    phys, virt = tmp_path / "phys.bin", tmp_path / "virt.bin"
    assert hmp.cmd(f'pmemsave 0x100000 64 "{phys}"') == ""
    assert hmp.cmd(f'memsave {ALIAS + 0x100000:#x} 64 "{virt}"') == ""
    assert phys.read_bytes() == virt.read_bytes() and phys.read_bytes()[:4] == struct.pack("<I", 0x1BADB002)


def test_big_pmemsave_shows_progress(hmp, tmp_path):
    out = tmp_path / "ram.bin"
    reply = hmp.cmd(f'pmemsave 0 0x2000000 "{out}"')
    assert "pmemsave: 25% (8 of 32 MiB)" in reply and "pmemsave: 75% (24 of 32 MiB)" in reply
    assert out.stat().st_size == 0x2000000


@pytest.mark.skipif(shutil.which("gdb") is None, reason="gdb is not installed")
@pytest.mark.parametrize("paging", [False, True])
def test_dump_guest_memory_is_read_by_gdb(hmp, tmp_path, firmware_dir, paging):
    core = tmp_path / "core"
    reply = hmp.cmd(f'dump-guest-memory {"-p " if paging else ""}"{core}"')
    assert reply.startswith("dump-guest-memory: ") and "written to" in reply
    kernel = guests.guest_path("steer", firmware_dir)
    r = subprocess.run(["gdb", "-batch", "-nx", "-ex", "print/x steer_magic", "-ex", "print steer_boot",
                        "-ex", "info registers eip", str(kernel), str(core)],
                       capture_output=True, text=True, timeout=60)
    assert "$1 = 0x57ee4a61" in r.stdout, r.stdout + r.stderr
    assert re.search(r"\$2 = [1-9]", r.stdout)
    assert re.search(r"eip +0x10[0-9a-f]{4}", r.stdout), r.stdout
    if paging:   # the alias mapping is in the core with its virtual address
        r = subprocess.run(["gdb", "-batch", "-nx", "-ex", f"x/1xw {ALIAS + 0x100000:#x}", str(kernel), str(core)],
                           capture_output=True, text=True, timeout=60)
        assert "0x1badb002" in r.stdout, r.stdout + r.stderr


def test_log_items(hmp):
    """(the trace itself is tested with -D in test_exit_trace.py: here it would go to stderr)"""
    listing = hmp.cmd("log bogus")
    assert listing.startswith("Log items (comma separated):") and "exits-summary" in listing

DUMP_COMMANDS = ["xp /8xb 0x100000", "xp /5xw 0x100000", "xp /3xg 0x100000", "xp /6dh 0x100000",
                 "xp /4ub 0x100000", "xp /3ow 0x100000", "xp /10cb 0x100000", "xp /2xw 0x7fffff8",
                 "xp /2xw 0x10000000"]


def _dump_lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.replace("\r", "").split("\n")
            if re.match(r"(0x)?[0-9a-f]{8,16}:", line)]


@pytest.mark.qemu
def test_memory_dumps_match_qemu(hmp, qemu, firmware_dir):
    """The same kernel in the same place: QEMU's monitor and pyhv's print the same lines."""
    kernel = guests.guest_path("steer", firmware_dir)
    script = "".join(f"{c}\n" for c in DUMP_COMMANDS) + "quit\n"
    r = subprocess.run([qemu, "-accel", "tcg", "-display", "none", "-serial", "null", "-m", "128M",
                        "-monitor", "stdio", "-S", "-kernel", str(kernel)],
                       input=script.encode(), capture_output=True, timeout=60)
    expected = _dump_lines(r.stdout.decode(errors="replace"))
    ours = _dump_lines("".join(hmp.cmd(c) for c in DUMP_COMMANDS))
    assert len(expected) >= len(DUMP_COMMANDS) and ours == expected
