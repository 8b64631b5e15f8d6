"""Errors a user can cause and fix: the CLI prints them as one line and exits 2."""


class UserError(Exception):
    """A problem with the user's input (config, file, flag, checkpoint); the message says how to fix it."""


class TrainingFailed(Exception):
    """The work itself failed (for example the loss became NaN); the CLI exits 1."""
