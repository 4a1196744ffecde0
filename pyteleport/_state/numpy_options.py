"""NumPy's print options (``set_printoptions``) and floating-point error
handling (``seterr``, ``seterrcall``)."""
import numpy


def save():
    return numpy.get_printoptions(), numpy.geterr(), numpy.geterrcall()


def restore(state):
    printoptions, err, errcall = state
    numpy.set_printoptions(**printoptions)
    numpy.seterr(**err)
    numpy.seterrcall(errcall)
