"""Classes that travel by value (defined in ``__main__`` or in a function).

A class travels in two steps, the usual way to cut a cycle: a skeleton (its
metaclass, name, bases, ``__slots__``, an Enum's members) that the pickler
memoises, then its attributes.  So whatever in the class refers back to it
(``P.ZERO = P(0)``, a method's ``__class__`` cell, ``Color.RED``) finds the
very class in the memo.  Enum members travel by name: ``Color(1) is
Color.RED`` holds on the target as here.

Both halves live here: the target imports this module only when a payload
carries a class by value (standard library imports only, made on demand).
"""
import sys
import types

# never carried: type() makes them again from the skeleton (or, for _abc_impl,
# ABCMeta does)
_MADE_BY_TYPE = ("__dict__", "__weakref__", "_abc_impl")


def _enum_type():
    enum = sys.modules.get("enum")
    return enum.EnumMeta if enum is not None else None


def reduce_class(cls):
    """The reduction of a class that cannot be found again by name."""
    meta = type(cls)
    own = cls.__dict__
    namespace = {"__module__": own.get("__module__", cls.__module__),
                 "__qualname__": cls.__qualname__}
    for key in ("__slots__", "__orig_bases__"):   # Generic's __init_subclass__ reads the latter
        if key in own:
            namespace[key] = own[key]
    attrs = {}
    for key, value in own.items():
        if key in namespace or key in _MADE_BY_TYPE:
            continue
        if isinstance(value, (types.MemberDescriptorType, types.GetSetDescriptorType)) and \
                getattr(value, "__objclass__", None) is cls:
            continue   # a slot's descriptor: __slots__ makes it again
        attrs[key] = value
    enum_meta = _enum_type()
    if enum_meta is not None and isinstance(cls, enum_meta):
        # aliases too: the skeleton makes them aliases again
        members = [(name, m._value_) for name, m in cls._member_map_.items()]
        member_dicts = {name: vars(m) for name, m in cls._member_map_.items()
                        if m._name_ == name and getattr(m, "__dict__", None)}
        for name in cls._member_map_:
            attrs.pop(name, None)   # the members themselves: made by the skeleton
        return (enum_skeleton, (meta, cls.__name__, cls.__bases__, namespace, members),
                (attrs, member_dicts), None, None, set_class_state)
    return (class_skeleton, (meta, cls.__name__, cls.__bases__, namespace),
            (attrs, None), None, None, set_class_state)


def reduce_enum_member(member):
    """An Enum member of a class travelling by value: by name, so that it is
    the class's own member on the target; None for a Flag's combinations."""
    cls = type(member)
    name = member._name_
    if name is not None and cls._member_map_.get(name) is member:
        return enum_member, (cls, name)
    return None


def reduce_type_var(tv):
    """A ``typing.TypeVar`` of the script: by value (by reference it would
    be looked up in ``__main__`` before ``__main__`` holds it)."""
    options = {"bound": tv.__bound__, "covariant": tv.__covariant__,
               "contravariant": tv.__contravariant__}
    if hasattr(tv, "__infer_variance__"):
        options["infer_variance"] = tv.__infer_variance__
    if getattr(tv, "has_default", None) is not None and tv.has_default():
        options["default"] = tv.__default__
    return type_var, (tv.__name__, tv.__constraints__, options, tv.__module__)


# ---- on the target

def type_var(name, constraints, options, module):
    import typing
    tv = typing.TypeVar(name, *constraints, **options)
    tv.__module__ = module
    return tv


def class_skeleton(meta, name, bases, namespace):
    return meta(name, bases, dict(namespace))


def enum_skeleton(meta, name, bases, namespace, members):
    body = meta.__prepare__(name, bases)
    for key, value in namespace.items():
        body[key] = value
    for key, value in members:
        body[key] = value
    return meta(name, bases, body)


def set_class_state(cls, state):
    attrs, member_dicts = state
    for key, value in attrs.items():
        # type's own setattr: a metaclass may forbid it (EnumMeta for members)
        type.__setattr__(cls, key, value)
    if member_dicts:
        for name, d in member_dicts.items():
            vars(cls._member_map_[name]).update(d)
    return cls


def enum_member(cls, name):
    return cls._member_map_[name]
