"""Where snippets and their data live, at the same linear addresses natively and in the
guest: a region below 4 GiB (32-bit code reaches it), 2 MiB aligned (one large page in
the guest's long-mode page tables)."""

REGION = 0x5A000000
REGION_SIZE = 0x20000
CODE = REGION                # the snippet, then the way back (native) or HLT (guest)
CODE_MAX = 0x400
STUB = REGION + 0x800        # native 32-bit snippets return to 64-bit mode through here
DATA = REGION + 0x10000      # the data buffer that memory operands address
DATA_SIZE = 0x200
MID = DATA + DATA_SIZE // 2  # pointers start around here: room on both sides
