"""Makes classes at run time and keeps them in this module, by name (as
``deap.creator.create`` does)."""


def make(name, base, **attributes):
    """A new class ``name`` deriving from ``base``; class attributes from
    ``attributes``; instances get ``tag`` set on creation."""
    def init(self, *args, **kwargs):
        base.__init__(self, *args, **kwargs)
        self.tag = name.lower()

    cls = type(name, (base,), dict(attributes))
    cls.__init__ = init
    globals()[name] = cls
    return cls


def make_plain(name, base):
    """A class with no attributes and no methods of its own."""
    globals()[name] = type(name, (base,), {})
    return globals()[name]
