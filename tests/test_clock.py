"""The device model's clocks and timers."""

import threading
import time

import pytest

from devicemodel.clock import DeviceTimer, HostClock, VirtualClock


def test_virtual_clock_runs_callbacks_in_deadline_order_at_their_deadlines():
    clock = VirtualClock()
    seen = []
    clock.schedule(300, lambda: seen.append(("c", clock.now_ns())))
    clock.schedule(100, lambda: seen.append(("a", clock.now_ns())))
    clock.schedule(100, lambda: seen.append(("b", clock.now_ns())))
    clock.advance(99)
    assert seen == []
    clock.advance(250)
    assert seen == [("a", 100), ("b", 100), ("c", 300)]
    assert clock.now_ns() == 349


def test_virtual_clock_cancel_and_callbacks_that_schedule():
    clock = VirtualClock()
    seen = []
    handle = clock.schedule(10, lambda: seen.append("cancelled"))
    clock.cancel(handle)

    def tick():
        seen.append(clock.now_ns())
        if clock.now_ns() < 30:
            clock.schedule(clock.now_ns() + 10, tick)

    clock.schedule(10, tick)
    clock.advance(100)
    assert seen == [10, 20, 30]
    handle.cancel()  # cancelling again (or after running) is harmless


def test_virtual_clock_never_goes_back():
    clock = VirtualClock(start_ns=50)
    with pytest.raises(ValueError):
        clock.advance_to(10)


def test_device_timer_rearming_replaces_the_deadline():
    clock = VirtualClock()
    fired = []
    timer = DeviceTimer(clock, lambda: fired.append(clock.now_ns()))
    timer.arm(100)
    timer.arm(50)
    assert timer.deadline_ns == 50
    clock.advance(200)
    assert fired == [50]
    assert timer.deadline_ns is None
    timer.arm(300)
    timer.cancel()
    clock.advance(200)
    assert fired == [50]


def test_host_clock_thread_fires_with_the_lock_held():
    lock = threading.Lock()
    clock = HostClock(lock=lock)
    fired = threading.Event()
    held = []

    def callback():
        held.append(lock.locked())
        fired.set()

    clock.start()
    try:
        with lock:
            clock.schedule(clock.now_ns() + 2_000_000, callback)
        assert fired.wait(5)
    finally:
        clock.stop()
    assert held == [True]


def test_host_clock_pause_stops_time_and_deadlines():
    clock = HostClock()
    clock.pause()
    frozen = clock.now_ns()
    fired = []
    clock.schedule(frozen + 1, lambda: fired.append(True))
    time.sleep(0.01)
    assert clock.now_ns() == frozen
    assert clock.run_due() == 0
    clock.resume()
    time.sleep(0.002)
    assert clock.now_ns() > frozen
    assert clock.run_due() == 1 and fired == [True]


def test_host_clock_state_continues_from_the_saved_time():
    clock = HostClock()
    clock.load_state({"now_ns": 5_000_000_000})
    assert 5_000_000_000 <= clock.now_ns() < 6_000_000_000
    assert clock.save_state()["now_ns"] >= 5_000_000_000
