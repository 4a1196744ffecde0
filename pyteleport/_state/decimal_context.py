"""``decimal``: the current context of the main thread (precision, rounding,
traps, flags); the very object, if the program holds it."""
import decimal


def save():
    return decimal.getcontext()


def restore(context):
    decimal.setcontext(context)
