"""A recorder for a device's interrupt output: the levels it was driven to, in order."""


class Line:
    def __init__(self):
        self.levels = []

    def __call__(self, level):
        self.levels.append(level)

    @property
    def level(self):
        return self.levels[-1] if self.levels else 0


class IrqLines:
    """Numbered interrupt lines (ISA IRQs, GSIs) driven by ``set_irq(line, level)``: their
    levels now and every change, in order."""

    def __init__(self, count):
        self.levels = [0] * count
        self.changes = []

    def set_irq(self, line, level):
        self.levels[line] = level
        self.changes.append((line, level))
