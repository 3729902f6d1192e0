"""Errors a user can fix: entry points print these as one line instead of a stack trace."""


class UserError(ValueError):
    """A bad option, file or field. The message names it and says what was expected."""


class DataError(UserError):
    """A data file or row that does not follow the documented schema."""


class ConfigError(UserError):
    """An option value that is out of range or inconsistent with the data."""


class NumericalError(UserError):
    """Numbers that cannot be right: a non-finite loss, weight or embedding (a diverged model), or
    a metric outside its range. Nothing computed from them is reported."""


def require_number(option: str, value, low: float = float("-inf"), high: float = float("inf"),
                   integer: bool = False, low_open: bool = False) -> None:
    """Raise ConfigError naming ``option`` unless ``value`` is a finite number (an integer if
    ``integer``) in [low, high] (``low`` excluded if ``low_open``)."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool) and value == value and abs(value) != float("inf")
    whole = number and (isinstance(value, int) or not integer)
    if whole and (value > low if low_open else value >= low) and value <= high:
        return
    if low > float("-inf") and high < float("inf") and not low_open:
        bounds = f"in [{low:g}, {high:g}]"
    else:
        bounds = " and ".join([f"{'>' if low_open else '>='} {low:g}"] * (low > float("-inf")) + [f"<= {high:g}"] * (high < float("inf")))
    kind = "an integer " if integer and not whole else ("a number " if not number else "")
    raise ConfigError(f"{option} must be {kind}{bounds}, got {value!r}")
