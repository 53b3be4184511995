"""Errors that reach the user. Every one carries the exit code the CLI returns for it."""


class InvBenchError(Exception):
    """Bad usage or bad input: the message names what was wrong and how to fix it (exit 2)."""

    exit_code = 2


class UsageError(InvBenchError):
    """An unknown name, a malformed option, a wrong path, an invalid configuration value."""


class DataError(InvBenchError):
    """A dataset, image or artifact that is missing, corrupt or of the wrong shape."""


class TrainingDiverged(InvBenchError):
    """Training produced NaN/inf or an exploding loss; nothing was cached."""
