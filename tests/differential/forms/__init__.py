"""The form tables, one module per instruction family."""

from differential.forms import alu, shifts, simd

FAMILIES = {
    "alu": alu.FORMS,
    "shifts": shifts.FORMS,
    "simd": simd.FORMS,
}
ALL = [form for forms in FAMILIES.values() for form in forms]
