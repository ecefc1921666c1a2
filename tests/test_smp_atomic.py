"""LOCK-prefixed instructions are atomic across vCPUs running in parallel threads
(the core releases the GIL while guest code runs)."""

import mmap
import struct
import threading

import pytest

from devicemodel.entry_state import set_protected_mode_entry
from kvm import Kvm
from kvm.constants import KVM_EXIT_HLT

CODE, COUNTER, LOCK = 0x1000, 0x5000, 0x6000
N = 200_000


def run_on_cpus(code: bytes, ncpus: int = 2):
    kvm = Kvm()
    vm = kvm.create_vm()
    ram = mmap.mmap(-1, 1 << 20)
    ram[CODE:CODE + len(code)] = code
    vm.set_user_memory_region(0, 0, len(ram), ram)
    vcpus = [vm.create_vcpu(n) for n in range(ncpus)]
    for vcpu in vcpus:
        set_protected_mode_entry(vcpu, CODE, 0, 0)
    exits = {}

    def run(vcpu):
        exits[vcpu.id] = vcpu.run().exit_reason

    threads = [threading.Thread(target=run, args=(v,)) for v in vcpus]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert all(exits[v.id] == KVM_EXIT_HLT for v in vcpus)
    return ram


def test_lock_inc_counts_every_increment():
    code = (b"\xb9" + struct.pack("<I", N) +                 # mov ecx, N
            b"\xf0\xff\x05" + struct.pack("<I", COUNTER) +   # lock inc dword [COUNTER]
            b"\x49\x75\xf6\xf4")                             # dec ecx; jnz; hlt
    ram = run_on_cpus(code)
    assert struct.unpack_from("<I", ram, COUNTER)[0] == 2 * N


def test_cmpxchg_spinlock_protects_a_plain_increment():
    code = (b"\xb9" + struct.pack("<I", N) +                               # mov ecx, N
            b"\xb8\x00\x00\x00\x00" + b"\xba\x01\x00\x00\x00" +            # acquire: eax=0, edx=1
            b"\xf0\x0f\xb1\x15" + struct.pack("<I", LOCK) + b"\x75\xec" +  # lock cmpxchg [LOCK], edx; jnz acquire
            b"\xa1" + struct.pack("<I", COUNTER) + b"\x40" +               # mov eax, [COUNTER]; inc eax
            b"\xa3" + struct.pack("<I", COUNTER) +                         # mov [COUNTER], eax
            b"\xc7\x05" + struct.pack("<II", LOCK, 0) +                    # mov dword [LOCK], 0
            b"\x49\x75\xd4\xf4")                                           # dec ecx; jnz acquire; hlt
    ram = run_on_cpus(code)
    assert struct.unpack_from("<I", ram, COUNTER)[0] == 2 * N
    assert struct.unpack_from("<I", ram, LOCK)[0] == 0


@pytest.mark.parametrize("code", [
    b"\xf0\x90",                 # LOCK NOP
    b"\xf0\x01\xc0",             # LOCK ADD eax, eax (register destination)
    b"\xf0\x39\x05\x00\x50\x00\x00",  # LOCK CMP [mem], eax (does not write)
])
def test_invalid_lock_prefix_is_ud(code):
    from kvm import vmx
    from silicon import RawGuest
    g = RawGuest(code)
    g.vcpu.vmwrite(vmx.EXCEPTION_BITMAP, 1 << 6)
    assert g.run_to_exit() == vmx.EXIT_REASON_EXCEPTION_NMI
    assert g.read(vmx.VM_EXIT_INTR_INFO) & 0xFF == 6
