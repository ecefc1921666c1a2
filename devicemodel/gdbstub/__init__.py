"""pyhv's gdbstub: gdb debugs the guest over the GDB remote serial protocol (-s, -gdb).

spec.py parses the option; server.py (which needs the hypervisor layer) listens and runs
sessions (session.py) against the VM (debugger.py) with the registers of registers.py."""
