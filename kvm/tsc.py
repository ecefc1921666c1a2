"""The TSC's rate (KVM_GET_TSC_KHZ). The silicon's TSC is the host's invariant TSC, so its
rate is measured once, against the monotonic clock, as a kernel calibrates it."""

import threading
import time

CALIBRATION_SECONDS = 0.02
_lock = threading.Lock()
_khz = None


def tsc_khz(read_tsc) -> int:
    """kHz of the TSC that ``read_tsc()`` returns (measured on the first call only)."""
    global _khz
    with _lock:
        if _khz is None:
            tsc0, ns0 = read_tsc(), time.perf_counter_ns()
            time.sleep(CALIBRATION_SECONDS)
            tsc1, ns1 = read_tsc(), time.perf_counter_ns()
            _khz = max(1, round((tsc1 - tsc0) * 1_000_000 / (ns1 - ns0)))
        return _khz
