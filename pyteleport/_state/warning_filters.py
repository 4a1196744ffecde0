"""``warnings``: the filters (``filterwarnings``, ``simplefilter``, ``-W``),
the default action, and ``showwarning``/``formatwarning`` if replaced
(``logging.captureWarnings`` does)."""
import warnings


def save():
    state = {"filters": list(warnings.filters), "defaultaction": warnings.defaultaction}
    for name in ("showwarning", "formatwarning"):
        current = getattr(warnings, name)
        if current is not getattr(warnings, f"_{name}_orig", current):
            state[name] = current
    return state


def restore(state):
    warnings.filters[:] = state["filters"]
    warnings.defaultaction = state["defaultaction"]
    for name in ("showwarning", "formatwarning"):
        if name in state:
            setattr(warnings, name, state[name])
    mutated = getattr(warnings, "_filters_mutated", None)
    if mutated is not None:
        mutated()   # the C part caches the filters by version
