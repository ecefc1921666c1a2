#!/usr/bin/env python3
"""A live view of a running pyhv VM's exit counters, in the spirit of Linux's kvm_stat:
it reads ``query-stats`` over QMP (the VM must run with ``-qmp unix:PATH,server,nowait``
or ``-qmp tcp:HOST:PORT,server,nowait``) and shows each exit reason's total, its share
and its rate over the last interval.

    python tools/kvm_stat.py /tmp/qmp.sock            refresh every second (Ctrl-C ends)
    python tools/kvm_stat.py 127.0.0.1:4444 --once    one table, rates over --interval
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time


def parse_address(text: str):
    host, colon, port = text.rpartition(":")
    if colon and port.isdigit():
        return (host or "127.0.0.1", int(port))
    return text


async def read_counters(client) -> dict:
    reply = await client.execute("query-stats", {"target": "vm"})
    return {stat["name"]: stat["value"] for stat in reply[0]["stats"]}


def render(now: dict, before: dict, seconds: float) -> str:
    """The table: exit reasons by total, most frequent first."""
    reasons = sorted((name for name in now if name.startswith("exits_")), key=lambda n: -now[n])
    total = now.get("exits", 0)
    lines = [f"{'Event':<28} {'Total':>12} {'%Total':>7} {'CurAvg/s':>10}"]
    for name in reasons:
        rate = (now[name] - before.get(name, 0)) / seconds if seconds > 0 else 0.0
        share = 100.0 * now[name] / total if total else 0.0
        lines.append(f"{'kvm_exit(' + name[len('exits_'):].upper() + ')':<28} {now[name]:>12} "
                     f"{share:>6.1f}% {rate:>10.0f}")
    rate = (total - before.get("exits", 0)) / seconds if seconds > 0 else 0.0
    lines.append(f"{'Total':<28} {total:>12} {100.0 if total else 0.0:>6.1f}% {rate:>10.0f}")
    return "\n".join(lines)


async def main_async(args) -> int:
    from qemu.qmp import QMPClient
    client = QMPClient("kvm_stat")
    await client.connect(parse_address(args.address))
    try:
        before, then = await read_counters(client), time.monotonic()
        while True:
            await asyncio.sleep(args.interval)
            now, at = await read_counters(client), time.monotonic()
            table = render(now, before, at - then)
            if args.once:
                print(table)
                return 0
            sys.stdout.write("\x1b[H\x1b[2J" + table + "\n")
            sys.stdout.flush()
            before, then = now, at
    finally:
        await client.disconnect()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("address", help="QMP socket: a Unix socket path or HOST:PORT")
    parser.add_argument("--once", action="store_true", help="print one table and exit")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between readings")
    args = parser.parse_args(argv)
    try:
        return asyncio.run(main_async(args))
    except KeyboardInterrupt:
        return 0
    except (OSError, ConnectionError) as e:
        print(f"kvm_stat: cannot read {args.address}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
