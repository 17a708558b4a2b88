"""Reading settings from the environment: the few parsers the app and its security share."""
import importlib


class ConfigError(ValueError):
    """A HASHDROP_ setting the app cannot use; the text says which one and what it accepts."""


def as_bool(key, value):
    """An environment value as a boolean, or a ConfigError that says what is accepted."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"HASHDROP_{key} must be true or false, not {value!r}")


def as_int(key, value, minimum=0):
    """An environment value as a whole number of at least minimum, or a ConfigError that says so."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"HASHDROP_{key} must be a whole number, not {value!r}") from None
    if number < minimum:
        raise ConfigError(f"HASHDROP_{key} must be at least {minimum}")
    return number


def load_factory(name, setting):
    """The callable that "module:attribute" names, or a ConfigError that says why not."""
    module_name, _, attribute = name.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(f"HASHDROP_{setting} must be a known name or module:factory, "
                          f"not {name!r} ({exc})") from None
