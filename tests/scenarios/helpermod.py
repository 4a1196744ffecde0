"""A user module whose state is changed at run time by s13_globals.py."""
counter = 0
registry = {}


def bump():
    global counter
    counter += 1
    return counter


class Helper:
    def __init__(self, tag):
        self.tag = tag

    def __repr__(self):
        return f"Helper({self.tag!r})"


def make(tag):
    return Helper(tag)
