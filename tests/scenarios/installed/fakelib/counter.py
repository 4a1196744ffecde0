"""State kept in an object the module owns, moved through the module
protocol (``__pyteleport_state__``/``__pyteleport_restore__``)."""


class _Counter:
    def __init__(self):
        self.value = 0


_counter = _Counter()


def bump():
    _counter.value += 1
    return _counter.value


def __pyteleport_state__():
    return _counter.value


def __pyteleport_restore__(value):
    _counter.value = value
