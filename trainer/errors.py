"""Errors the trainer reports to the user as a message and a non-zero exit, never a traceback."""


class TrainerError(Exception):
    """A problem with the user's input (data, options, run folder) that they can fix."""

    exit_code = 2


class DataError(TrainerError):
    """The dataset is missing, empty, unreadable or inconsistent."""
