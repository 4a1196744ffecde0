"""The move happens while an exception is being handled."""
import sys

from _scenario import log, move


def handle():
    try:
        raise ValueError("original problem")
    except ValueError as exc:
        log("handling:", exc)
        move()
        log("after the move:", type(exc).__name__, exc, exc.args)
        info = sys.exc_info()
        log("sys.exc_info():", info[0].__name__, info[1] is exc, info[2] is not None)
        try:
            try:
                raise
            except ValueError as again:
                log("bare raise re-raised the same object:", again is exc)
                raise
        except ValueError as outer:
            log("caught outside the nested try:", outer is exc, outer)
        log("still handling:", sys.exc_info()[1] is exc)
        try:
            raise TypeError("secondary")
        except TypeError as second:
            log("implicit chaining:", second.__context__ is exc)
        raise
    finally:
        log("finally in handle()")


try:
    handle()
except ValueError as caught:
    log("caller caught:", caught, caught.args)
log("after all handlers:", sys.exc_info())
