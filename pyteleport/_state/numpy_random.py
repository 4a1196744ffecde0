"""``numpy.random``'s legacy global generator (``np.random.seed``,
``np.random.rand`` and the other module functions): its bit generator and the
legacy Gaussian cache."""
import numpy.random
from numpy.random import mtrand


def save():
    generator = mtrand._rand
    return generator._bit_generator, generator.get_state(legacy=False)


def restore(state):
    bit_generator, legacy_state = state
    if type(mtrand._rand._bit_generator) is not type(bit_generator):
        numpy.random.set_bit_generator(bit_generator)   # numpy.random.set_bit_generator() was used
    mtrand._rand.set_state(legacy_state)
