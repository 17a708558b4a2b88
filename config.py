"""Reading settings from the environment: the few parsers the app and its security share."""


def as_bool(key, value):
    """An environment value as a boolean, or a ValueError that says what is accepted."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"HASHDROP_{key} must be true or false, not {value!r}")


def as_int(key, value, minimum=0):
    """An environment value as a whole number of at least minimum, or a ValueError that says so."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"HASHDROP_{key} must be a whole number, not {value!r}") from None
    if number < minimum:
        raise ValueError(f"HASHDROP_{key} must be at least {minimum}")
    return number
