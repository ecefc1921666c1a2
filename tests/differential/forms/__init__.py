"""The form tables, one module per instruction family."""

from differential.forms import alu, muldiv, shifts

FAMILIES = {
    "alu": alu.FORMS,
    "shifts": shifts.FORMS,
    "muldiv": muldiv.FORMS,
}
ALL = [form for forms in FAMILIES.values() for form in forms]
