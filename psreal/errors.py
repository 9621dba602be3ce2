"""How a real run fails: `RunFailed` carries the lines that name the role, rank and cause, and
the exit code the command ends with."""

from __future__ import annotations

EXIT_FAILED = 1


class RunFailed(Exception):
    def __init__(self, lines: list[str], code: int = EXIT_FAILED) -> None:
        super().__init__("\n".join(lines))
        self.lines, self.code = lines, code
