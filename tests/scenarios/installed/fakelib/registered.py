"""State moved through ``pyteleport.register_state``."""
import pyteleport

_names = []


def remember(name):
    _names.append(name)
    return list(_names)


def _save():
    return list(_names) or None


def _restore(names):
    _names[:] = names


pyteleport.register_state(__name__, _save, _restore)
