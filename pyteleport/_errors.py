"""The one exception type users handle."""


class TeleportError(RuntimeError):
    """A move or a checkpoint could not be made.

    Raised in the calling program *before* it is handed over: the program is
    still running where it was and may go on, retry, or pick another backend.
    The message names the frame (``file:line, in function``), the object and
    the reason.
    """


# shown (tracebacks, repr) and pickled as the public name
TeleportError.__module__ = "pyteleport"
