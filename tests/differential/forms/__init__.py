"""The form tables, one module per instruction family."""

from differential.forms import (alu, bits, control, guard, legacy32, moves, muldiv, prefixes, shifts,
                                simd, stack, strings, x87)

FAMILIES = {
    "alu": alu.FORMS,
    "shifts": shifts.FORMS,
    "muldiv": muldiv.FORMS,
    "bits": bits.FORMS,
    "moves": moves.FORMS,
    "stack": stack.FORMS,
    "strings": strings.FORMS,
    "control": control.FORMS,
    "legacy32": legacy32.FORMS,
    "prefixes": prefixes.FORMS,
    "guard": guard.FORMS,
    "simd": simd.FORMS,
    "x87": x87.FORMS,
}
ALL = [form for forms in FAMILIES.values() for form in forms]
BY_NAME = {form.name: form for form in ALL}
assert len(BY_NAME) == len(ALL), "form names must be unique"
