"""``faulthandler``: enabled on the source, enabled on the target (on its
standard error: the file given to ``enable()`` cannot be read back)."""
import faulthandler


def save():
    return True if faulthandler.is_enabled() else None


def restore(enabled):
    faulthandler.enable()
