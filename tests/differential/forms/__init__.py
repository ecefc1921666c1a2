"""The form tables, one module per instruction family."""

from differential.forms import alu, bits, muldiv, shifts

FAMILIES = {
    "alu": alu.FORMS,
    "shifts": shifts.FORMS,
    "muldiv": muldiv.FORMS,
    "bits": bits.FORMS,
}
ALL = [form for forms in FAMILIES.values() for form in forms]
