"""The ``-d`` log items, and the VM-exit summary that ``-d exits-summary`` prints."""

from __future__ import annotations

from devicemodel.errors import ConfigError

LOG_ITEMS = {
    "exits": "trace every VM exit: one line with the vCPU, exit reason, RIP and qualification",
    "exits-summary": "show each vCPU's VM exits by exit reason (count, time) when the VM ends",
    "int": "show interrupts/exceptions in short format (the local APIC's interrupts, which the "
           "processor delivers itself under APIC virtualization, with -accel kvm,apicv=off)",
    "cpu_reset": "show CPU state before CPU resets",
}


def parse_log_items(spec: str) -> frozenset[str]:
    """The items of a ``-d`` argument (comma-separated); ConfigError for unknown ones."""
    items = [item for item in spec.split(",") if item]
    for item in items:
        if item not in LOG_ITEMS:
            raise ConfigError(f"unknown log item '{item}' (use -d help for a list)")
    return frozenset(items)


def log_items_help() -> str:
    width = max(map(len, LOG_ITEMS))
    return "\n".join(["Log items (comma separated):"]
                     + [f"{name.ljust(width)}  {text}" for name, text in LOG_ITEMS.items()])


def format_exit_stats(stats: dict, title: str) -> str:
    """A table of ``{reason: {"count": n, "time_ns": t}}``, most frequent first, with each
    reason's share of the exits and a total."""
    rows = sorted(stats.items(), key=lambda item: (-item[1]["count"], item[0]))
    width = max([len("exit reason")] + [len(name) for name, _ in rows])
    header = f"  {'exit reason'.ljust(width)}  {'count':>10}  {'share':>6}  {'time ms':>10}  {'avg us':>8}"
    lines = [title, header]
    total_count = sum(e["count"] for _, e in rows)

    def line(name: str, count: int, time_ns: int) -> str:
        avg_us = time_ns / count / 1000 if count else 0.0
        share = 100.0 * count / total_count if total_count else 0.0
        return (f"  {name.ljust(width)}  {count:>10}  {share:>5.1f}%  {time_ns / 1e6:>10.3f}  "
                f"{avg_us:>8.2f}")

    for name, entry in rows:
        lines.append(line(name, entry["count"], entry["time_ns"]))
    lines.append(line("total", sum(e["count"] for _, e in rows), sum(e["time_ns"] for _, e in rows)))
    return "\n".join(lines)
