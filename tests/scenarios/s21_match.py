"""The match statement (3.10+ syntax), imported by s21_edges on 3.10+ only."""
from _scenario import move


def moved():
    move()
    return 5


def classify(v):
    match v:
        case [a, b] if moved() == 5:
            return ("pair", a, b)
        case _:
            return "other"
