"""Errors a user can fix: printed as one line, exit code 2, never a `completed` run record."""
import difflib


class HarnessError(Exception):
    """A problem with the user's input (config, data, paths). Its message is one line that names the key or path."""


class ConfigError(HarnessError):
    pass


class DataError(HarnessError):
    pass


def unknown_choice(key: str, value: str, choices) -> ConfigError:
    """`method.name='lorra'` → an error naming the closest valid choices, then all of them."""
    choices = sorted(choices)
    close = difflib.get_close_matches(str(value), choices, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return ConfigError(f"{key}={value!r} is not a valid choice.{hint} Valid choices: {', '.join(choices)}")
