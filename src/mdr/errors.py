"""Errors a user can fix: entry points print these as one line instead of a stack trace."""


class UserError(ValueError):
    """A bad option, file or field. The message names it and says what was expected."""


class DataError(UserError):
    """A data file or row that does not follow the documented schema."""


class ConfigError(UserError):
    """An option value that is out of range or inconsistent with the data."""
