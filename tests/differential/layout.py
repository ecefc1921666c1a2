"""Where snippets and their data live, at the same linear addresses natively and in the
guest: a region below 4 GiB (32-bit code reaches it), 2 MiB aligned (one large page in
the guest's long-mode page tables).  The snippet starts just before a 4 KiB page
boundary and the data buffer is centred on one, so instruction fetches and data
accesses that cross pages are common."""

REGION = 0x5A000000
REGION_SIZE = 0x20000
CODE = REGION + 0x1000 - 8   # the snippet, then the way back (native) or HLT (guest)
CODE_MAX = 0x400
STUB = REGION + 0x2000       # native 32-bit snippets return to 64-bit mode through here
DATA_SIZE = 0x200
DATA = REGION + 0x10000 - DATA_SIZE // 2   # the data buffer that memory operands address
MID = DATA + DATA_SIZE // 2  # pointers start around here (a page boundary): room both sides
