"""User-facing errors: the CLI prints their message on one line and exits with code 2."""


class HBBenchError(Exception):
    """A problem with the user's input (names, budgets, files, options). Never a bug."""


class UnknownName(HBBenchError):
    def __init__(self, kind: str, name: str, choices):
        self.kind, self.name, self.choices = kind, name, list(choices)
        super().__init__(f"unknown {kind} '{name}'; valid choices: {', '.join(self.choices)}")
