"""The helper process's side of Differential: it runs forms by name with its own native
runner and guest, and sends back what a FormResult holds."""

_differential = None


def run_form(name: str):
    global _differential
    from differential.forms import BY_NAME
    from differential.harness import Differential
    if _differential is None:
        _differential = Differential()
    result = _differential.run(BY_NAME[name])
    return result.cases, result.faults, result.mismatches, result.examples
