"""Pausing and resuming a running VM (QEMU's stop/cont) and the -smp machine, on the
real hypervisor: a paused VM executes no guest instructions until it is resumed."""

import threading
import time

import pytest

from guests import guest_path

from devicemodel.machine import Machine, MachineConfig
from devicemodel.runstate import PAUSED, PRELAUNCH, RUNNING, SHUTDOWN, RunState
from kvm.constants import KVM_MP_STATE_INIT_RECEIVED


def long_running_machine(**kwargs) -> Machine:
    """bench32 with more iterations than any test waits for; serial output discarded."""
    config = MachineConfig(kernel=str(guest_path("bench32")), cmdline="iterations=1000000000",
                           serials=["null"], **kwargs)
    return Machine(config)


def start(machine: Machine) -> threading.Thread:
    machine.power_on()
    thread = threading.Thread(target=machine.run, daemon=True)
    thread.start()
    return thread


def retired(machine: Machine) -> int:
    return sum(vcpu.instructions_retired() for vcpu in machine.vcpus)


def stop(machine: Machine, thread: threading.Thread) -> None:
    machine.request_exit(0)
    thread.join(10)
    machine.close()
    assert not thread.is_alive()


def test_pause_parks_the_vcpus_and_resume_lets_them_run():
    machine = long_running_machine()
    thread = start(machine)
    try:
        deadline = time.monotonic() + 10
        while retired(machine) == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert machine.runstate.status == RUNNING
        assert machine.pause()
        assert machine.runstate.status == PAUSED
        before, rip = retired(machine), machine.vcpus[0].get_regs().rip
        time.sleep(0.2)
        assert retired(machine) == before
        assert machine.vcpus[0].get_regs().rip == rip
        assert not machine.pause()       # already paused
        assert machine.resume()
        assert not machine.resume()      # already running
        deadline = time.monotonic() + 10
        while retired(machine) == before and time.monotonic() < deadline:
            time.sleep(0.01)
        assert retired(machine) > before
    finally:
        stop(machine, thread)
    assert machine.runstate.status == SHUTDOWN


def test_start_paused_runs_nothing_until_resumed():
    machine = long_running_machine(start_paused=True)
    thread = start(machine)
    try:
        assert machine.runstate.status == PRELAUNCH
        assert machine.runstate.wait_parked(5)
        time.sleep(0.1)
        assert retired(machine) == 0
        machine.resume()
        deadline = time.monotonic() + 10
        while retired(machine) == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert retired(machine) > 0
    finally:
        stop(machine, thread)


def test_smp_machine_has_application_processors_waiting_for_sipi():
    config = MachineConfig(kernel=str(guest_path("hello")), serials=["null"], cpus=3)
    machine = Machine(config)
    try:
        machine.power_on()
        assert [vcpu.get_mp_state() for vcpu in machine.vcpus[1:]] == [KVM_MP_STATE_INIT_RECEIVED] * 2
        machine.run()
        assert machine.runstate.stop_requested
        assert retired(machine) == machine.vcpus[0].instructions_retired() > 0
    finally:
        machine.close()


def test_runstate_pause_waits_for_every_vcpu_to_park():
    runstate = RunState(vcpus=2)
    assert runstate.pause()
    parked = threading.Thread(target=runstate.park_while_paused, daemon=True)
    parked.start()
    assert not runstate.wait_parked(0.1)     # one of two parked
    second = threading.Thread(target=runstate.park_while_paused, daemon=True)
    second.start()
    assert runstate.wait_parked(5)
    runstate.resume()
    parked.join(5)
    second.join(5)
    assert not parked.is_alive() and not second.is_alive()


@pytest.mark.parametrize("status", [3, 0])
def test_a_stop_request_releases_parked_vcpus(status):
    runstate = RunState()
    runstate.pause()
    parked = threading.Thread(target=runstate.park_while_paused, daemon=True)
    parked.start()
    assert runstate.wait_parked(5)
    runstate.request_exit(status)
    parked.join(5)
    assert not parked.is_alive()
    assert runstate.exit_status == status and runstate.status == SHUTDOWN


def test_held_vcpus_stay_parked_while_the_others_run():
    state = RunState(vcpus=2)
    state.pause()
    parked = []

    def loop(index):
        state.park_while_paused(index)
        parked.append(index)
    threads = [threading.Thread(target=loop, args=(n,), daemon=True) for n in (0, 1)]
    for t in threads:
        t.start()
    assert state.wait_parked(5)
    state.keep_parked({1})
    state.resume()
    threads[0].join(5)
    assert parked == [0]                # vCPU 1 is held
    assert state.pause()                # a pause ends the hold...
    state.resume()
    threads[1].join(5)
    assert parked == [0, 1]             # ...so the next resume lets it go
