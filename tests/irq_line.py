"""A recorder for a device's interrupt output: the levels it was driven to, in order."""


class Line:
    def __init__(self):
        self.levels = []

    def __call__(self, level):
        self.levels.append(level)

    @property
    def level(self):
        return self.levels[-1] if self.levels else 0
