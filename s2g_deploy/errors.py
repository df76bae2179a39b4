"""The error hierarchy. Each class carries the CLI exit code it maps to (GUIDE section 3)."""

from __future__ import annotations


def first_line(exc: BaseException, limit: int | None = None) -> str:
    """The first line of ``exc``'s message (at most ``limit`` characters), else its type's name: how a
    library's multi-line error becomes part of one of ours."""
    text = str(exc).strip().splitlines()
    return text[0][:limit] if text else type(exc).__name__


class S2GError(Exception):
    """Base class of every error this package raises on purpose. Message: one line, names the problem."""

    exit_code = 1


class InputError(S2GError):
    """Invalid input from the user: a bad argument, file, profile or subnet (exit code 2)."""

    exit_code = 2


class CheckpointError(InputError):
    """A checkpoint file that cannot be read or does not match its own metadata."""


class SubnetError(InputError):
    """A subnet that is malformed or outside the supernet's elastic space."""


class ProfileError(InputError):
    """A device profile that cannot be found, parsed or validated; the message lists every problem."""

    def __init__(self, message: str, problems: tuple[str, ...] = ()):
        super().__init__(message)
        self.problems = tuple(problems)


class CostModelError(S2GError):
    """The cost model cannot count a network, e.g. an op that carries weights has no MAC rule (a bug)."""


class BudgetInfeasibleError(S2GError):
    """No subnet meets the requested budgets (exit code 3)."""

    exit_code = 3


class VerificationError(S2GError):
    """A check on a produced artifact failed: parity, or a budget missed when measured (exit code 4)."""

    exit_code = 4
