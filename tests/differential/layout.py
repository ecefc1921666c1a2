"""Where snippets and their data live, at the same linear addresses natively and in the
guest: a region below 4 GiB (32-bit code reaches it), 2 MiB aligned (one page table in
the guest's long-mode paging).  The snippet starts just before a 4 KiB page boundary
and pointers start around another one (MID), so instruction fetches and data accesses
that cross pages are common.  Right after the data buffer is a read-only page (GUARD):
writes that reach it fault, natively and in the guest, and must change nothing."""

REGION = 0x5A000000
REGION_SIZE = 0x20000
CODE = REGION + 0x1000 - 8   # the snippet, then the way back (native) or HLT (guest)
CODE_MAX = 0x400
STUB = REGION + 0x2000       # native 32-bit snippets return to 64-bit mode through here
GUARD = REGION + 0x10000     # read-only
DATA_SIZE = 0x1200
DATA = GUARD - DATA_SIZE     # the data buffer that memory operands address
MID = GUARD - 0x1000         # pointers start around here (a page boundary): room both sides
