"""The silicon's debug features as the SDM specifies them (Vol. 3 Chapter 18, and the
VMX parts: 25.5.2 monitor trap flag, 27.3.1.5 and 27.7.3 pending debug exceptions,
28.3.3 RF): DR0-DR3 instruction, write and read/write breakpoints under DR7, DR6
status, RF, TF single-stepping, general detect, INT1, and MTF VM exits.  Raw exits
(tests/silicon.py) show what the processor reports to a hypervisor; guests with an IDT
show what a guest's own debug handler sees."""

import struct

from asm import assemble
from kvm import vmx
from silicon import CODE_GPA, STACK_TOP, RawGuest

DATA = 0x2000
EXC_DB = 1
DR6_INIT = 0xFFFF0FF0
DR6_BD, DR6_BS = 1 << 13, 1 << 14
RF, TF, IF = 1 << 16, 1 << 8, 1 << 9
DB_EXIT = vmx.INTR_INFO_VALID_MASK | vmx.INTR_TYPE_HARD_EXCEPTION | EXC_DB
EXEC, WRITE, ACCESS = 0, 1, 3
LEN = {1: 0, 2: 1, 8: 2, 4: 3}


def dr7(n: int, rw: int = EXEC, size: int = 1, enable: int = 1) -> int:
    """DR7 with breakpoint n enabled (L bit, or G bit for enable=2)."""
    return 0x400 | (enable << (2 * n)) | (rw << (16 + 4 * n)) | (LEN[size] << (18 + 4 * n))


def guest(source: str, intercept_db: bool = True, idt: dict = None) -> RawGuest:
    g = RawGuest(assemble(source, 32, CODE_GPA))
    g.map_rw(DATA)
    if idt is not None:
        g.with_idt(idt)
    if intercept_db:
        g.vcpu.vmwrite(vmx.EXCEPTION_BITMAP, 1 << EXC_DB)
    return g


def at(offset: int) -> int:
    return CODE_GPA + offset


def end_of(source: str) -> int:
    """The address after `source` assembled at CODE_GPA."""
    return CODE_GPA + len(assemble(source, 32, CODE_GPA))


def expect_db_exit(g: RawGuest, qual: int, rip: int):
    assert g.run_to_exit() == vmx.EXIT_REASON_EXCEPTION_NMI
    assert g.read(vmx.VM_EXIT_INTR_INFO) == DB_EXIT
    assert g.qualification() == qual
    assert g.rip() == rip


# ---- instruction breakpoints ------------------------------------------------------------

def test_instruction_breakpoint_faults_before_the_instruction_and_rf_skips_it():
    g = guest("nop; inc eax; inc eax; hlt")
    g.set_dr(2, at(1))
    g.set_dr(7, dr7(2))
    expect_db_exit(g, qual=0b100, rip=at(1))      # B2; the inc has not run
    assert g.vcpu.get_regs().rax == 0
    assert g.rflags() & RF == 0                   # a #DB pushes the RF it found
    assert g.dr(6) == DR6_INIT                    # a #DB that exits leaves DR6 alone
    g.vcpu.vmwrite(vmx.GUEST_RFLAGS, g.rflags() | RF)
    assert g.run_to_exit() == vmx.EXIT_REASON_HLT  # RF: the breakpoint is ignored once
    assert g.vcpu.get_regs().rax == 2
    assert g.rflags() & RF == 0                   # and cleared by the instruction


def test_global_enable_and_disabled_breakpoints():
    g = guest("nop; nop; hlt")
    g.set_dr(0, at(0))
    g.set_dr(1, at(1))
    g.set_dr(7, dr7(1, enable=2))                 # only DR1, through G1
    expect_db_exit(g, qual=0b10, rip=at(1))


def test_instruction_breakpoint_reached_by_a_jump_from_another_page():
    target = 0x5000
    g = guest(f"mov ecx, 3\nmov eax, {target}\njmp eax")
    tail = assemble(f"dec ecx\njnz {CODE_GPA + 5}\nhlt", 32, target)
    g.ram[target:target + len(tail)] = tail
    g.map(target, vmx.VMX_EPT_RWX_MASK)
    g.set_dr(3, target + len(tail) - 1)          # the hlt, reached on the third pass
    g.set_dr(7, dr7(3))
    expect_db_exit(g, qual=0b1000, rip=target + len(tail) - 1)
    assert g.vcpu.get_regs().rcx == 0


# ---- data breakpoints --------------------------------------------------------------------

def test_write_breakpoint_traps_after_the_write_on_any_overlap():
    g = guest(f"mov eax, 0x11223344\nmov [{DATA}], eax\nnop\nhlt")
    g.set_dr(1, DATA + 2)                         # 2 bytes at DATA+2: inside the dword
    g.set_dr(7, dr7(1, WRITE, 2))
    expect_db_exit(g, qual=0b10, rip=at(10))      # after the mov: a trap
    assert struct.unpack_from("<I", g.ram, DATA)[0] == 0x11223344


def test_write_breakpoint_ignores_reads_and_access_breakpoint_sees_them():
    code = f"mov eax, [{DATA}]\nmov ebx, [{DATA + 4}]\nhlt"
    g = guest(code)
    g.set_dr(0, DATA)
    g.set_dr(7, dr7(0, WRITE, 4))
    assert g.run_to_exit() == vmx.EXIT_REASON_HLT
    g = guest(code)
    g.set_dr(0, DATA + 4)
    g.set_dr(7, dr7(0, ACCESS, 4))
    expect_db_exit(g, qual=0b1, rip=at(11))


def test_breakpoint_length_aligns_the_address():
    # DR0 = DATA+5 with 4 bytes covers DATA+4..DATA+7 (the low bits are ignored)
    for offset, hit in ((3, False), (4, True), (7, True), (8, False)):
        g = guest(f"mov byte ptr [{DATA + offset}], 1\nhlt")
        g.set_dr(0, DATA + 5)
        g.set_dr(7, dr7(0, WRITE, 4))
        if hit:
            expect_db_exit(g, qual=1, rip=at(7))
        else:
            assert g.run_to_exit() == vmx.EXIT_REASON_HLT


def test_eight_byte_breakpoint_and_two_hits_in_one_instruction():
    g = guest(f"push dword ptr [{DATA}]\nhlt")
    g.vcpu.vmwrite(vmx.GUEST_RSP, STACK_TOP)
    g.map_rw(STACK_TOP - 0x1000)
    g.set_dr(0, DATA)                             # the push reads it...
    g.set_dr(3, STACK_TOP - 8)                    # ...and writes into this quadword
    g.set_dr(7, dr7(0, ACCESS, 4) | dr7(3, WRITE, 8))
    expect_db_exit(g, qual=0b1001, rip=at(6))


def test_locked_write_hits_a_write_breakpoint():
    g = guest(f"lock inc dword ptr [{DATA}]\nhlt")
    g.set_dr(2, DATA)
    g.set_dr(7, dr7(2, WRITE, 4))
    expect_db_exit(g, qual=0b100, rip=at(7))
    assert g.ram[DATA] == 1


def test_rep_stos_traps_after_the_iteration_that_hits():
    g = guest(f"mov edi, {DATA}\nmov ecx, 8\nmov eax, 0xAAAAAAAA\nrep stosd\nhlt")
    g.set_dr(0, DATA + 8)                         # the third element
    g.set_dr(7, dr7(0, WRITE, 4))
    rep = at(15)
    expect_db_exit(g, qual=1, rip=rep)            # not the last iteration: RIP stays
    regs = g.vcpu.get_regs()
    assert regs.rcx == 5 and regs.rdi == DATA + 12
    assert g.rflags() & RF                        # pushed as 1 between iterations
    assert g.run_to_exit() == vmx.EXIT_REASON_HLT
    assert g.vcpu.get_regs().rcx == 0
    assert g.ram[DATA:DATA + 32] == b"\xaa" * 32


def test_breakpoints_on_a_watched_page_leave_other_accesses_alone():
    # writes next to the watched dword, then self-modifying code on the same page
    g = guest(f"mov dword ptr [{DATA + 16}], 7\nmov byte ptr [{CODE_GPA + 0x40}], 0x90\n"
              f"mov eax, [{DATA + 16}]\nhlt")
    g.set_dr(0, DATA)
    g.set_dr(7, dr7(0, ACCESS, 4))
    assert g.run_to_exit() == vmx.EXIT_REASON_HLT
    assert g.vcpu.get_regs().rax == 7


# ---- single-step, general detect, INT1 ------------------------------------------------------

def test_tf_traps_after_each_instruction_with_bs():
    g = guest("inc eax\ninc eax\nhlt")
    g.vcpu.vmwrite(vmx.GUEST_RFLAGS, g.rflags() | TF)
    expect_db_exit(g, qual=DR6_BS, rip=at(1))
    expect_db_exit(g, qual=DR6_BS, rip=at(2))
    assert g.vcpu.get_regs().rax == 2


def test_popf_that_sets_tf_traps_only_after_the_next_instruction():
    g = guest("pushfd\nor dword ptr [esp], 0x100\npopfd\nnop\nnop\nhlt")
    g.vcpu.vmwrite(vmx.GUEST_RSP, STACK_TOP)
    g.map_rw(STACK_TOP - 0x1000)
    popf = at(1 + 7)
    expect_db_exit(g, qual=DR6_BS, rip=popf + 2)  # after the nop that follows popfd


def test_mov_ss_holds_the_single_step_trap_over_the_next_instruction():
    g = guest("mov ax, ss\nmov ss, ax\ninc ebx\ninc ebx\nhlt", idt={})   # a GDT for SS
    g.vcpu.vmwrite(vmx.GUEST_RFLAGS, g.rflags() | TF)
    expect_db_exit(g, qual=DR6_BS, rip=end_of("mov ax, ss"))
    # mov ss and the inc after it: one trap
    expect_db_exit(g, qual=DR6_BS, rip=end_of("mov ax, ss\nmov ss, ax\ninc ebx"))
    assert g.vcpu.get_regs().rbx == 1


def test_general_detect_faults_on_mov_dr_after_the_dr_access_exit():
    g = guest("mov eax, dr0\nhlt")
    g.set_dr(7, 0x400 | (1 << 13))
    expect_db_exit(g, qual=DR6_BD, rip=at(0))
    assert g.rflags() & RF                        # a fault other than a code breakpoint
    g = guest("mov eax, dr0\nhlt")
    g.set_dr(7, 0x400 | (1 << 13))
    g.set_controls(vmx.CPU_BASED_VM_EXEC_CONTROL, vmx.CPU_BASED_MOV_DR_EXITING)
    assert g.run_to_exit() == vmx.EXIT_REASON_DR_ACCESS


def test_int1_exits_as_a_privileged_software_exception():
    g = guest("int1\nhlt")
    assert g.run_to_exit() == vmx.EXIT_REASON_EXCEPTION_NMI
    assert g.read(vmx.VM_EXIT_INTR_INFO) == vmx.INTR_INFO_VALID_MASK | vmx.INTR_TYPE_PRIV_SW_EXCEPTION | EXC_DB
    assert g.read(vmx.VM_EXIT_INSTRUCTION_LEN) == 1
    assert g.rip() == at(0)


# ---- through the guest's IDT: DR6, RF, and the guest's DR7 across VM exits ------------------

HANDLER = 0x1800


def counting_handler(set_rf: bool) -> bytes:
    """#DB handler: count in [DATA+0x100], keep DR6 in [DATA+0x104], clear DR6, IRET."""
    rf = "or dword ptr [esp+8], 0x10000\n" if set_rf else ""
    return assemble(f"inc dword ptr [{DATA + 0x100}]\npush eax\nmov eax, dr6\n"
                    f"mov [{DATA + 0x104}], eax\nxor eax, eax\nmov dr6, eax\npop eax\n{rf}iretd",
                    32, HANDLER)


def test_guest_instruction_breakpoint_sets_dr6_and_its_handler_resumes_with_rf():
    # the guest programs DR0/DR7 itself; an OUT exit in between must not lose DR7
    target = at(0x40)
    code = (f"mov eax, {target}\nmov dr0, eax\nmov eax, 0x402\nmov dr7, eax\n"
            f"out 0x80, al\njmp {target}")
    g = guest(code, intercept_db=False, idt={EXC_DB: HANDLER})
    g.ram[HANDLER:HANDLER + 64] = counting_handler(set_rf=True).ljust(64, b"\x90")
    g.ram[target:target + 2] = b"\x40\xf4"        # inc eax; hlt
    assert g.run_to_exit() == vmx.EXIT_REASON_IO_INSTRUCTION
    g.vcpu.vmwrite(vmx.GUEST_RIP, g.rip() + 2)
    assert g.run_to_exit() == vmx.EXIT_REASON_HLT
    count, dr6 = struct.unpack_from("<II", g.ram, DATA + 0x100)
    assert count == 1                             # RF set by the handler: no second hit
    assert dr6 == DR6_INIT | 1
    assert g.dr(7) == 0x402


def test_guest_single_step_counts_instructions_until_popf_clears_tf():
    code = ("pushfd\nor dword ptr [esp], 0x100\npopfd\n"      # TF on: traps from the 2nd insn on
            "nop\nnop\nnop\n"
            "pushfd\nand dword ptr [esp], 0xfffffeff\npopfd\n"  # the popfd clearing TF still traps
            "nop\nhlt")
    g = guest(code, intercept_db=False, idt={EXC_DB: HANDLER})
    g.ram[HANDLER:HANDLER + 64] = counting_handler(set_rf=False).ljust(64, b"\x90")
    assert g.run_to_exit() == vmx.EXIT_REASON_HLT
    count, dr6 = struct.unpack_from("<II", g.ram, DATA + 0x100)
    assert count == 6                             # nop x3, pushfd, and, and the popfd clearing TF
    assert dr6 == DR6_INIT | DR6_BS


# ---- monitor trap flag and pending debug exceptions -------------------------------------------

def test_mtf_exits_after_every_instruction():
    g = guest("inc eax\ninc eax\nhlt", intercept_db=False)
    g.set_controls(vmx.CPU_BASED_VM_EXEC_CONTROL, vmx.CPU_BASED_MONITOR_TRAP_FLAG)
    for n in (1, 2):
        assert g.run_to_exit() == vmx.EXIT_REASON_MONITOR_TRAP_FLAG
        assert g.rip() == at(n) and g.vcpu.get_regs().rax == n


def test_mtf_exit_before_the_handler_of_an_injected_event_and_of_a_fault():
    g = guest("ud2\nhlt", intercept_db=False, idt={3: HANDLER, 6: HANDLER})
    g.ram[HANDLER:HANDLER + 2] = b"\xf4\xf4"
    g.set_controls(vmx.CPU_BASED_VM_EXEC_CONTROL, vmx.CPU_BASED_MONITOR_TRAP_FLAG)
    g.vcpu.vmwrite(vmx.VM_ENTRY_INTR_INFO_FIELD,
                   vmx.INTR_INFO_VALID_MASK | vmx.INTR_TYPE_SOFT_EXCEPTION | 3)
    g.vcpu.vmwrite(vmx.VM_ENTRY_INSTRUCTION_LEN, 1)
    assert g.run_to_exit() == vmx.EXIT_REASON_MONITOR_TRAP_FLAG
    assert g.rip() == HANDLER                     # delivered, nothing executed
    g.vcpu.vmwrite(vmx.GUEST_RIP, CODE_GPA)
    assert g.run_to_exit() == vmx.EXIT_REASON_MONITOR_TRAP_FLAG
    assert g.rip() == HANDLER                     # ud2 faulted: at the #UD handler


def test_mtf_exit_comes_before_the_single_step_trap_which_stays_pending():
    g = guest("inc eax\nhlt")
    g.set_controls(vmx.CPU_BASED_VM_EXEC_CONTROL, vmx.CPU_BASED_MONITOR_TRAP_FLAG)
    g.vcpu.vmwrite(vmx.GUEST_RFLAGS, g.rflags() | TF)
    assert g.run_to_exit() == vmx.EXIT_REASON_MONITOR_TRAP_FLAG
    assert g.read(vmx.GUEST_PENDING_DBG_EXCEPTIONS) == DR6_BS
    g.set_controls(vmx.CPU_BASED_VM_EXEC_CONTROL, clear_bits=vmx.CPU_BASED_MONITOR_TRAP_FLAG)
    expect_db_exit(g, qual=DR6_BS, rip=at(1))     # delivered at entry, before the hlt


def test_pending_data_breakpoint_at_entry_needs_the_enabled_bit():
    g = guest("nop\nhlt")
    g.vcpu.vmwrite(vmx.GUEST_PENDING_DBG_EXCEPTIONS, 0b10)          # B1 alone: not valid
    assert g.run_to_exit() == vmx.EXIT_REASON_HLT
    g = guest("nop\nhlt")
    g.vcpu.vmwrite(vmx.GUEST_PENDING_DBG_EXCEPTIONS, 0b10 | (1 << 12))
    expect_db_exit(g, qual=0b10, rip=at(0))


def test_entry_checks_bs_against_tf_in_an_interrupt_shadow():
    g = guest("nop\nhlt")
    g.vcpu.vmwrite(vmx.GUEST_RFLAGS, g.rflags() | TF | IF)
    g.vcpu.vmwrite(vmx.GUEST_INTERRUPTIBILITY_INFO, 1)              # blocking by STI
    assert g.enter() == vmx.VMX_EXITED
    assert g.reason() == vmx.EXIT_REASON_FAILED_VMENTRY | vmx.EXIT_REASON_INVALID_STATE
    g = guest("nop\nhlt")
    g.vcpu.vmwrite(vmx.GUEST_RFLAGS, g.rflags() | TF | IF)
    g.vcpu.vmwrite(vmx.GUEST_INTERRUPTIBILITY_INFO, 1)
    g.vcpu.vmwrite(vmx.GUEST_PENDING_DBG_EXCEPTIONS, DR6_BS)
    expect_db_exit(g, qual=DR6_BS, rip=at(0))


def test_ept_violation_saves_rf_so_a_code_breakpoint_does_not_hit_twice():
    g = guest(f"mov eax, [{DATA + 0x10000}]\nhlt")
    g.set_dr(0, at(0))
    g.set_dr(7, dr7(0))
    g.vcpu.vmwrite(vmx.GUEST_RFLAGS, g.rflags() | RF)              # past the breakpoint
    assert g.run_to_exit() == vmx.EXIT_REASON_EPT_VIOLATION
    assert g.rflags() & RF
    g.map_rw(DATA + 0x10000)
    assert g.run_to_exit() == vmx.EXIT_REASON_HLT
