"""What the PC's firmware leaves in memory for the operating system: the E820 memory map,
the BIOS data area, the MP tables, the ACPI tables, and QEMU's fw_cfg device through
which firmware and guests read the machine's configuration."""
