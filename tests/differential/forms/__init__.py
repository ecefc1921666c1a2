"""The form tables, one module per instruction family."""

from differential.forms import alu, bits, moves, muldiv, shifts, stack

FAMILIES = {
    "alu": alu.FORMS,
    "shifts": shifts.FORMS,
    "muldiv": muldiv.FORMS,
    "bits": bits.FORMS,
    "moves": moves.FORMS,
    "stack": stack.FORMS,
}
ALL = [form for forms in FAMILIES.values() for form in forms]
