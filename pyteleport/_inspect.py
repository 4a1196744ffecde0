"""``pyteleport inspect``: what a payload holds and why it is the size it is.

The payload is verified first (signature, else checksum), its context read
as plain data and its state walked without being unpickled
(``_payload.anatomy``): nothing of the file runs.  :func:`report` gives the
facts as plain data (``--json`` prints them), :func:`render` as text.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Optional

from ._payload import anatomy as _anatomy

_GLOBALS_SHOWN = 20     # in the text; --json has every one


def report(path: str, header, ctx: Dict[str, Any], payload, file_size: int) -> Dict[str, Any]:
    """Everything ``inspect`` says about the payload at ``path``."""
    buffer_sizes = [memoryview(b).nbytes for b in payload.buffers]
    out: Dict[str, Any] = {
        "path": path, "bytes": file_size, "state_bytes": len(payload.state),
        "buffers": len(buffer_sizes), "buffer_bytes": sum(buffer_sizes),
        "python": f"{header.python[0]}.{header.python[1]}",
        "pyteleport": header.pyteleport_version, "format": header.format_version,
        "signed": bool(header.key_id), "key_id": header.key_id.hex() if header.key_id else None,
        "key_path": header.key_path if header.key_id else None, "checksum": header.checksum,
        "cwd": ctx.get("cwd"), "argv": ctx.get("argv"), "task_index": ctx.get("task_index"),
    }
    wheres = ctx.get("frames")
    wheres = wheres if isinstance(wheres, list) else [wheres]
    try:
        out.update(_contents(payload, buffer_sizes, wheres, ctx))
    except Exception as e:    # a stream the walk cannot follow: say so, keep the rest
        out["frames"] = [{"where": w, "variables": None} for w in wheres]
        out["analysis_error"] = f"the program state could not be analysed ({type(e).__name__}: {e})"
    return out


def _contents(payload, buffer_sizes: List[int], wheres: List[Any], ctx: Dict[str, Any]) -> Dict[str, Any]:
    tree = _anatomy.walk(payload.state, buffer_sizes)
    names: Dict[int, str] = {}
    out: Dict[str, Any] = {}
    out["frames"] = _frames(tree, wheres, ctx.get("variables"), names)
    out["globals"] = _globals(tree, ctx.get("global_types"), names)
    out["module_attributes"] = _module_attributes(tree, names)
    # deep mode (chains deeper than the pickler recurses): objects' state in
    # batches after the root, applied once it is rebuilt
    out["deferred_bytes"] = sum(root.size for root in tree.roots[1:])
    total = len(payload.state) + sum(buffer_sizes)
    out["largest"] = [{"path": p, "type": t, "bytes": s} for p, t, s in _anatomy.largest(tree, total, names)]
    out["modules"] = sorted(m for m in tree.modules if m not in ("builtins", "copyreg")
                            and m != "pyteleport" and not m.startswith("pyteleport."))
    out["files"] = [_anatomy.file_record(n) for n in tree.files]
    return out


def _frames(tree, wheres: List[Any], labels: Any, names: Dict[int, str]) -> List[Dict[str, Any]]:
    chain = _anatomy.root_item(tree, "chain")
    morphs = [n for _, n in chain.children] if chain is not None else []
    morphs.reverse()            # the chain is innermost first; frames outermost first
    frames = []
    for i, where in enumerate(wheres):
        variables = []
        label = labels[i] if isinstance(labels, list) and i < len(labels) else None
        if i < len(morphs) and isinstance(label, dict):
            pairs = list(zip(label.get("fills") or (), _anatomy.morph_fills(morphs[i])))
            pairs += list(zip(label.get("cells") or (), _anatomy.morph_closure(morphs[i])))
            for entry, node in pairs:
                if not entry or node is None:
                    continue
                name, kind = entry
                names.setdefault(id(node), f"{where}: {name}")
                variables.append({"name": name, "type": kind, "bytes": node.size})
        frames.append({"where": where, "variables": variables})
    return frames


def _globals(tree, types: Any, names: Dict[int, str]) -> List[Dict[str, Any]]:
    """``__main__``'s globals, from the list they are rebuilt from first
    (``main_first``: each a call of ``rebuild.main_global(name, value)``)."""
    first = _anatomy.root_item(tree, "main_first")
    types = types if isinstance(types, dict) else {}
    out = []
    for _, entry in (first.children if first is not None else ()):
        args = entry.args()
        if len(args) != 2 or args[0].kind != "str":
            continue
        name, node = args[0].value, args[1]
        names.setdefault(id(node), f"global {name}")
        out.append({"name": name, "type": types.get(name) or _anatomy.type_of(node), "bytes": node.size})
    return out


def _module_attributes(tree, names: Dict[int, str]) -> List[Dict[str, Any]]:
    modules = _anatomy.root_item(tree, "modules")
    out = []
    for module, attrs in (modules.items() if modules is not None else ()):
        if attrs.kind != "dict":
            continue
        for name, node in attrs.items():
            names.setdefault(id(node), f"{module}.{name}")
            out.append({"module": module, "name": name, "type": _anatomy.type_of(node), "bytes": node.size})
    return out


def render(facts: Dict[str, Any]) -> str:
    """The report as text for a terminal."""
    signed = (f"signed, key id {facts['key_id']}: {facts['key_path']}" if facts["signed"]
              else f"checksum {facts['checksum']}; NOT signed: pyteleport resume refuses it")
    lines = [
        f"payload:     {_text(facts['path'])} ({facts['bytes']:,} bytes: program state "
        f"{facts['state_bytes']:,}, {facts['buffers']} large buffer(s) {facts['buffer_bytes']:,})",
        f"python:      {facts['python']}",
        f"pyteleport:  {facts['pyteleport']} (format {facts['format']}, {signed})",
        f"directory:   {_text(facts['cwd'])}",
        f"argv:        {_text(facts['argv'])}",
        "frames (outermost first; sizes are bytes in this payload):",
    ]
    for frame in facts["frames"]:
        lines.append(f"  {_text(frame['where'])}")
        for v in frame["variables"] or ():
            lines.append(f"      {_text(v['name'])}: {_text(v['type'])}, {_size(v['bytes'])}")
    if facts.get("analysis_error"):
        lines.append(facts["analysis_error"])
        return "\n".join(lines)
    shown = sorted(facts["globals"], key=lambda g: -g["bytes"])
    lines.append(f"__main__ globals ({len(shown)}, largest first):")
    for g in shown[:_GLOBALS_SHOWN]:
        lines.append(f"  {_text(g['name'])}: {_text(g['type'])}, {_size(g['bytes'])}")
    if len(shown) > _GLOBALS_SHOWN:
        rest = shown[_GLOBALS_SHOWN:]
        lines.append(f"  ... and {len(rest)} more ({_size(sum(g['bytes'] for g in rest))}; --json lists them)")
    if facts["module_attributes"]:
        lines.append("module attributes carried:")
        for a in sorted(facts["module_attributes"], key=lambda a: -a["bytes"])[:_GLOBALS_SHOWN]:
            lines.append(f"  {_text(a['module'])}.{_text(a['name'])}: {_text(a['type'])}, {_size(a['bytes'])}")
    if facts["deferred_bytes"]:
        lines.append(f"deep structures: {_size(facts['deferred_bytes'])} of their objects' state is stored "
                     "after the rest, and counted in none of the sizes here")
    lines.append("largest objects:" if facts["largest"] else "largest objects: none above 64 KiB")
    for o in facts["largest"]:
        lines.append(f"  {_size(o['bytes']):>10}  {_text(o['type'])} at {_text(o['path'])}")
    lines.append("modules imported to rebuild it: " + (", ".join(facts["modules"]) or "none"))
    if facts["files"]:
        lines.append("files reopened:")
        for f in facts["files"]:
            where = "closed" if f.get("closed") else f"mode {f['mode']!r}, position {f['position']}"
            lines.append(f"  {_text(f['path'])} ({where})")
    else:
        lines.append("files reopened: none")
    return "\n".join(lines)


def _size(n: int) -> str:
    for unit, step in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= step:
            return f"{n / step:.1f} {unit}"
    return f"{n} bytes"


def _text(value: Optional[Any]) -> str:
    """A field for the terminal: plain text, no control characters (the
    context comes from the file)."""
    text = value if isinstance(value, str) else repr(value)
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def file_size(f) -> int:
    return os.fstat(f.fileno()).st_size
