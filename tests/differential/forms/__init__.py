"""The form tables, one module per instruction family."""

from differential.forms import alu, bits, control, moves, muldiv, shifts, stack, strings

FAMILIES = {
    "alu": alu.FORMS,
    "shifts": shifts.FORMS,
    "muldiv": muldiv.FORMS,
    "bits": bits.FORMS,
    "moves": moves.FORMS,
    "stack": stack.FORMS,
    "strings": strings.FORMS,
    "control": control.FORMS,
}
ALL = [form for forms in FAMILIES.values() for form in forms]
