"""The form tables, one module per instruction family."""

from differential.forms import alu, shifts, simd, x87

FAMILIES = {
    "alu": alu.FORMS,
    "shifts": shifts.FORMS,
    "simd": simd.FORMS,
    "x87": x87.FORMS,
}
ALL = [form for forms in FAMILIES.values() for form in forms]
