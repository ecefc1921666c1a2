"""What the host processor implements (instructions the native side can run)."""

from functools import cache


@cache
def cpu_flags() -> frozenset[str]:
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def host_has(feature: str) -> bool:
    return feature in cpu_flags()
