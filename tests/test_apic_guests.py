"""The interrupt-controller test kernels (firmware/kernels/apic.c, ioapic.c, smp/,
apic_loop.c) on pyhv, with the local APICs on the processor's APIC virtualization and
without it (-accel kvm,apicv=off), and the same kernels under QEMU's TCG with the same
-smp printing the same lines. apic_loop's APIC ID reads, TPR writes, self-IPIs and EOIs
exit only without APIC virtualization."""

import re

import pytest

import guests
from monitor_client import PyhvProcess
from test_guests_pyhv import run_pyhv

# the local APICs with and without APIC virtualization
APICV_MODES = [pytest.param([], id="apicv"), pytest.param(["-accel", "kvm,apicv=off"], id="no-apicv")]

APIC_LINES = [
    "apic test", "cpuid apic: yes", "apic base: 0xfee00900", "id: 0x00000000 version: 0x00050014",
    "svr: 0x000001ff lint0: 0x00008700 lint1: 0x00008400",
    "tpr: 0x00 ppr: 0x00 ldr: 0x00000000 dfr: 0xffffffff", "lvt timer: 0x00010000 error: 0x00010000",
    "ldr: 0x5a000000 dfr (cluster): 0x0fffffff", "tpr 0x60: ppr 0x60",
    "self ipi below tpr: taken 0, irr 0x00010000", "self ipi after tpr 0: taken 1",
    "in the handler: isr 0x00010000 ppr 0x50 tmr 0x00000000", "pending: irr 0x00220000 0x00000004",
    "taken in order: 0x62 0x55 0x51", "isr after eoi: 0x00000000", "nmi ipi to itself: 1", "dcr: 0x3",
    "current count counts down within the initial count: yes", "periodic: 20 or more ticks",
    "stopped: current count 0", "one-shot: 1 tick, current count 0", "one-shot while masked: 1 tick",
]
TSC_DEADLINE_LINES = [
    "cpuid tsc-deadline: yes", "initial count in tsc-deadline mode: 0", "deadline armed: yes",
    "tsc-deadline: 1 tick, tsc past the deadline: yes, msr now 0x0", "deadline in the past: fires",
    "disarmed: 2 ticks",
]
GP = "#13 err=0x0000 eip=+0 cs=0x08 fl=0x00000002"
X2APIC_LINES = [
    "cpuid x2apic: yes", "x2apic base: 0xfee00d00",
    "x2apic id: 0x00000000 version: 0x00050014 ldr: 0x00000001 svr: 0x000001ff",
    "x2apic self ipi: 1", "x2apic self ipi of vector 5: esr 0x20", "x2apic nmi ipi: 2 icr 0x00004400",
    *(f"{name}: {GP}" for name in ("wrmsr id", "rdmsr eoi", "wrmsr eoi 1", "rdmsr dfr", "rdmsr icr2",
                                   "wrmsr tpr 0x100", "wrmsr tpr high", "rdmsr self ipi")),
    "wrmsr tpr 0x10: none", f"back to xapic: {GP}", "disable: none", "enable xapic: none",
    "xapic again: svr 0x000000ff tpr 0x00 id 0x00000000",
]


def lines(out: str, banner: str) -> list[str]:
    return [line for line in guests.serial_lines(out, banner) if line]


@pytest.mark.parametrize("accel", APICV_MODES)
def test_apic_kernel(firmware_dir, accel):
    status, out, err = run_pyhv("-kernel", str(firmware_dir / "apic.elf"), "-nographic", *guests.DEBUG_EXIT_ARGS,
                                *accel)
    assert status == guests.exit_status(0x14), err
    assert lines(out, "apic test") == APIC_LINES + ["apic test done"]


@pytest.mark.parametrize("accel", APICV_MODES)
def test_apic_kernel_tsc_deadline_and_x2apic(firmware_dir, accel):
    status, out, err = run_pyhv("-kernel", str(firmware_dir / "apic.elf"), "-nographic", *guests.DEBUG_EXIT_ARGS,
                                "-append", "tsc-deadline x2apic", *accel)
    assert status == guests.exit_status(0x14), err
    assert lines(out, "apic test") == APIC_LINES + TSC_DEADLINE_LINES + X2APIC_LINES + ["apic test done"]


@pytest.mark.qemu
@pytest.mark.parametrize("kernel, banner", [("apic", "apic test"), ("ioapic", "ioapic test"),
                                            ("apic_loop", "apic loop test")])
def test_kernel_matches_qemu(firmware_dir, qemu, kernel, banner):
    path = firmware_dir / f"{kernel}.elf"
    q_status, q_out = guests.run_qemu(path)[:2]
    p_status, p_out, err = run_pyhv("-m", "128M", "-kernel", str(path), "-nographic", *guests.DEBUG_EXIT_ARGS)
    assert p_status == q_status, err
    assert guests.serial_lines(p_out, banner) == guests.serial_lines(q_out, banner)


@pytest.mark.parametrize("accel", APICV_MODES)
def test_ioapic_kernel_routes_the_pit_and_the_rtc(firmware_dir, accel):
    status, out, err = run_pyhv("-kernel", str(firmware_dir / "ioapic.elf"), "-nographic", *guests.DEBUG_EXIT_ARGS,
                                *accel)
    assert status == guests.exit_status(0x15), err
    assert lines(out, "ioapic test") == [
        "ioapic test", "version: 0x00170020", "pin 0: 0x00010000 0x00000000", "pin 2: 0x00000030",
        "pit through pin 2: 20 or more ticks", "rtc through pin 8 (level): 10 or more ticks",
        "remote irr in the handler: yes", "tmr bit in the handler: yes", "pin 8 after eoi: 0x00008031",
        "ioapic test done"]


@pytest.mark.parametrize("accel", APICV_MODES)
def test_smp_kernel_on_4_cpus(firmware_dir, accel):
    status, out, err = run_pyhv("-kernel", str(firmware_dir / "smp.elf"), "-nographic", *guests.DEBUG_EXIT_ARGS,
                                "-smp", "4", *accel)
    assert status == guests.exit_status(0x16), err
    assert lines(out, "smp test") == [
        "smp test", "processors in the mp table: 4, the bootstrap processor is apic id 0 (apic id register 0)",
        "cpu 1 (apic id 1): started", "cpu 2 (apic id 2): started", "cpu 3 (apic id 3): started",
        *(f"cpu {i} started with cs 0x0800, cr0 0x60000010, edx the processor signature: yes" for i in (1, 2, 3)),
        "ring ipis received: 50 50 50 50", "lock inc total: 400000 (4 cpus x 100000)",
        "nmi ipis received: 1 1 1", "ipis to all but self received: 1 1 1", "logical ipis received: 1 1 1",
        "lowest-priority ipis received: 1 0 0", "cpu 1 started again by init-sipi: yes", "esr: 0x00",
        "smp test done"]


@pytest.mark.qemu
@pytest.mark.parametrize("cpus", [1, 2, 4])
def test_smp_kernel_matches_qemu(firmware_dir, qemu, cpus):
    # one socket per vCPU: QEMU's default topology puts cores in one package, and SeaBIOS's
    # MP table then lists only the package's first processor
    smp = f"{cpus},sockets={cpus}"
    path = firmware_dir / "smp.elf"
    q_status, q_out = guests.run_qemu(path, extra_args=["-smp", smp])[:2]
    p_status, p_out, err = run_pyhv("-m", "128M", "-kernel", str(path), "-nographic", *guests.DEBUG_EXIT_ARGS,
                                    "-smp", smp)
    assert p_status == q_status == guests.exit_status(0x16), err
    assert guests.serial_lines(p_out, "smp test") == guests.serial_lines(q_out, "smp test")
    assert f"lock inc total: {cpus * 100000} ({cpus} cpus x 100000)" in p_out


# ---- the APIC accesses that APIC virtualization keeps from exiting -------------------------------

READS, IPIS = 20000, 200
APIC_LOOP_LINES = [
    "apic loop test", f"apic id reads: {READS}, the same: yes",
    f"self ipis below and above the tpr: {IPIS} of {IPIS} taken in time",
    "isr after the eois: 0x00000000, tpr 0x00", "rtc through pin 8 (level): 10 or more ticks",
]


def vcpu_exits(stderr: str, index: int = 0) -> dict:
    """{exit reason: count} of vCPU ``index`` from the -d exits-summary table."""
    table = stderr.split(f"VM exits of vCPU {index} by reason", 1)[1].split("\n\n")[0]
    return {name: int(count) for name, count in re.findall(r"^  ([A-Z_0-9]+) +(\d+) ", table, re.M)
            if name != "total"}


@pytest.mark.parametrize("x2apic", [False, True], ids=["xapic", "x2apic"])
@pytest.mark.parametrize("apicv", [True, False], ids=["apicv", "no-apicv"])
def test_apic_loop_exits(firmware_dir, apicv, x2apic):
    status, out, err = run_pyhv("-kernel", str(firmware_dir / "apic_loop.elf"), "-nographic", *guests.DEBUG_EXIT_ARGS,
                                "-append", f"reads={READS} ipis={IPIS}" + " x2apic" * x2apic, "-d", "exits-summary",
                                *([] if apicv else ["-accel", "kvm,apicv=off"]))
    assert status == guests.exit_status(0x17), err
    assert lines(out, "apic loop test") == APIC_LOOP_LINES + ["apic loop test done"]
    exits = vcpu_exits(err)
    # each round: TPR up, self-IPI, TPR down, EOI
    apic_accesses = READS + 4 * IPIS
    if apicv:
        # left to exit: the APIC base and x2APIC switch, the RTC's level-triggered EOIs
        # (which reach the I/O APIC: the next RTC interrupt needs them), RAM mapped on demand
        assert exits.get("EOI_INDUCED", 0) >= 10, exits
        apic_exits = sum(exits.get(reason, 0) for reason in ("EPT_VIOLATION", "APIC_ACCESS", "APIC_WRITE",
                                                             "MSR_READ", "MSR_WRITE", "INTERRUPT_WINDOW"))
        assert apic_exits < 100, exits
    elif x2apic:
        assert exits["MSR_READ"] >= READS and exits["MSR_WRITE"] >= 4 * IPIS, exits
        assert "EOI_INDUCED" not in exits
    else:
        assert exits["EPT_VIOLATION"] >= apic_accesses, exits     # each one MMIO
        assert "EOI_INDUCED" not in exits


@pytest.mark.parametrize("x2apic", [False, True], ids=["xapic", "x2apic"])
@pytest.mark.parametrize("accel", APICV_MODES)
def test_info_lapic_shows_what_the_processor_did(firmware_dir, tmp_path, accel, x2apic):
    """With APIC virtualization the processor moved 0x61 to ISR and the guest's self-IPI put
    0x52 in IRR and its TPR write the TPR, all in the virtual-APIC page, without exits: the
    monitor shows them as without it."""
    vm = PyhvProcess(tmp_path, firmware_dir / "apic_loop.elf", *accel, qmp=False,
                     append="reads=10 ipis=10 hold" + " x2apic" * x2apic)
    try:
        vm.wait_serial("holding: tpr 0x20, 0x61 in service, 0x52 requested")
        hmp = vm.hmp()
        lapic = hmp.cmd("info lapic")
        hmp.close()
    finally:
        vm.stop()
    assert lapic.startswith("dumping local APIC state for CPU 0 \n")
    assert "\nISR\t 97 \nIRR\t 82 \n" in lapic, lapic
    assert "SPIV\t 0x000001ff APIC enabled" in lapic
    assert re.search(r"\nAPR 0x00 TPR 0x20 DFR 0x.. LDR 0x.. PPR 0x60\n", lapic), lapic
