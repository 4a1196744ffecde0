"""What a payload holds, read without running any of it (``pyteleport inspect``).

The program state is a pickle, and unpickling runs code: so the state is
never unpickled here.  Its opcodes are walked instead (``pickletools``
parses them; nothing is imported or called), on a model of the pickle
machine's stack and memo that builds a tree of what each object is made of:
a container and its items, a call (``REDUCE``) and its arguments, a class
named by module and name.  Every object gets the bytes its first occurrence
takes in the stream, plus the out-of-band buffers inside it, so that sizes
are those of the payload ("why is my checkpoint big").

Names come from the context, which the packing side writes as plain data
(``pack._variable_labels``): for each frame, the name and type of each value
its morph is filled with, in the order of the fills; the walk finds the
morphs (calls of ``rebuild.morph_function`` / ``fill_code`` in the state's
``chain``) and reads the fills' sizes.
"""
from __future__ import annotations

import io
from typing import Any, Dict, Iterator, List, Optional, Tuple

_REBUILD = "pyteleport._payload.rebuild"
_MORPHS = {(_REBUILD, "morph_function"), (_REBUILD, "fill_code")}
_FILES = {(_REBUILD, "reopen"): "r", (_REBUILD, "reopen_for_writing"): "w",
          (_REBUILD, "closed_file"): "closed", (_REBUILD, "reopen_devnull"): "devnull"}
# calls whose result the reader knows by another name
_KNOWN_CALLS = {
    (_REBUILD, "bytes_from"): "bytes", (_REBUILD, "bytearray_from"): "bytearray",
    (_REBUILD, "morph_function"): "function (a frame's morph)", (_REBUILD, "fill_code"): "code (a frame's morph)",
    (_REBUILD, "new_cell"): "cell", (_REBUILD, "function"): "function",
    ("dill._dill", "_create_function"): "function", ("dill._dill", "_create_code"): "code",
    ("dill._dill", "_create_type"): "class", ("dill._dill", "_create_cell"): "cell",
    ("dill._dill", "_load_type"): "type", ("numpy.core.numeric", "_frombuffer"): "numpy.ndarray",
    ("numpy._core.numeric", "_frombuffer"): "numpy.ndarray",
    ("numpy.core.multiarray", "_reconstruct"): "numpy.ndarray",
    ("numpy._core.multiarray", "_reconstruct"): "numpy.ndarray",
}
_IMPORTS = {(_REBUILD, "import_module"), ("dill._dill", "_import_module"), ("importlib", "import_module")}
_RAW = {"str", "bytes", "bytearray", "buffer"}
_CALLS = ("reduce", "newobj", "persid")
_KEEP_TEXT = 4096       # longer strings are kept as their length only


class Node:
    """One object of the state, as the pickle builds it."""

    __slots__ = ("kind", "value", "children", "size", "parent", "key")

    def __init__(self, kind: str, value: Any = None):
        self.kind = kind          # 'list', 'dict', 'str', 'global', 'reduce', 'newobj', 'buffer', ...
        self.value = value        # a short str/int, (module, name) of a global, a buffer's index
        self.children: List[Tuple[Any, Node]] = []   # (label, child); labels index, key or 'state'
        self.size = 0
        self.parent: Optional[Node] = None    # where it first occurs
        self.key: Any = None                  # its label there

    def child(self, i: int) -> Optional["Node"]:
        return self.children[i][1] if i < len(self.children) else None

    def callee(self) -> Optional[tuple]:
        """``(module, name)`` of the called global (a call or a new object)."""
        if self.kind in ("reduce", "newobj") and self.children:
            head = self.children[0][1]
            if head.kind == "global":
                return head.value
        return None

    def args(self) -> List["Node"]:
        args = self.child(1)
        return [n for _, n in args.children] if args is not None and args.kind == "tuple" else []

    def items(self) -> Iterator[Tuple[Any, "Node"]]:
        """A dict's ``(key value, value node)``."""
        for label, node in self.children:
            if label != "(key)":
                yield label, node


class _Entry:
    """An occurrence on the pickle machine's stack: the object and the bytes
    of the stream that make it here."""

    __slots__ = ("node", "start", "end", "oob", "first")

    def __init__(self, node: Optional[Node], start: int, end: int, oob: int = 0, first: bool = True):
        self.node, self.start, self.end, self.oob, self.first = node, start, end, oob, first


_MARK = None   # a mark is an entry without a node


class Anatomy:
    """The walk's result: the root object, every file reopened, every module named."""

    def __init__(self):
        self.roots: List[Node] = []
        self.modules: set = set()
        self.files: List[Node] = []
        self.nodes: List[Node] = []
        self.persistent: Dict[int, Node] = {}    # by id of the persistent id's node


def walk(state: bytes, buffer_sizes: List[int]) -> Anatomy:
    """The tree of ``state`` (one pickle, or several back to back: the deep
    mode's batches).  Raises ValueError on a stream it cannot follow."""
    import pickletools
    out = Anatomy()
    memo: Dict[int, Node] = {}
    stream = io.BytesIO(state)
    n_buffers = 0
    while stream.tell() < len(state):
        stack: List[_Entry] = []
        ops = list(pickletools.genops(stream))
        for k, (op, arg, pos) in enumerate(ops):
            end = ops[k + 1][2] if k + 1 < len(ops) else stream.tell()
            name = op.name
            if name in ("PROTO", "FRAME"):
                continue
            if name == "STOP":
                out.roots.append(stack.pop().node)
                break
            if name == "MARK":
                stack.append(_Entry(_MARK, pos, end))
            elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                memo[int(arg)] = stack[-1].node
            elif name == "MEMOIZE":
                memo[len(memo)] = stack[-1].node
            elif name in ("GET", "BINGET", "LONG_BINGET"):
                stack.append(_Entry(memo[int(arg)], pos, end, first=False))
            elif name == "POP":
                stack.pop()
            elif name == "POP_MARK":
                _pop_to_mark(stack)
            elif name == "DUP":
                top = stack[-1]
                stack.append(_Entry(top.node, pos, end, first=False))
            elif name == "NEXT_BUFFER":
                size = buffer_sizes[n_buffers] if n_buffers < len(buffer_sizes) else 0
                node = _new(out, Node("buffer", n_buffers))
                n_buffers += 1
                node.size = end - pos + size
                stack.append(_Entry(node, pos, end, size))
            elif name == "READONLY_BUFFER":
                stack[-1].end = end
            elif name in ("APPEND", "SETITEM", "APPENDS", "SETITEMS", "ADDITEMS", "BUILD"):
                _extend(stack, name, pos, end)
            else:
                _produce(out, stack, op, arg, pos, end)
    return out


def _new(out: Anatomy, node: Node) -> Node:
    out.nodes.append(node)
    return node


def _pop_to_mark(stack: List[_Entry]) -> Tuple[_Entry, List[_Entry]]:
    items = []
    while stack[-1].node is not _MARK:
        items.append(stack.pop())
    items.reverse()
    return stack.pop(), items


def _adopt(parent: Node, label: Any, entry: _Entry) -> None:
    parent.children.append((label, entry.node))
    if entry.first and entry.node.parent is None:
        entry.node.parent, entry.node.key = parent, label


def _label_of(key: Node) -> Any:
    return key.value if key.kind in ("str", "int") else "?"


def _extend(stack: List[_Entry], name: str, pos: int, end: int) -> None:
    """An operation that adds to the object below (a list's items, a dict's
    pairs, an instance's state)."""
    if name in ("APPENDS", "SETITEMS", "ADDITEMS"):
        mark, items = _pop_to_mark(stack)
        added_start = mark.start
    else:
        items = [stack.pop() for _ in range(2 if name == "SETITEM" else 1)][::-1]
        added_start = min((e.start for e in items), default=pos)
    target = stack[-1]
    node = target.node
    if name in ("APPEND", "APPENDS", "ADDITEMS"):
        base = len(node.children)
        for i, e in enumerate(items):
            _adopt(node, base + i, e)
    elif name in ("SETITEM", "SETITEMS"):
        for key, value in zip(items[::2], items[1::2]):
            _adopt(node, "(key)", key)
            _adopt(node, _label_of(key.node), value)
    else:
        _adopt(node, "state", items[0])
    added = sum(e.oob for e in items)
    if target.first:
        target.end, target.oob = end, target.oob + added
        node.size = target.end - target.start + target.oob
    else:
        node.size += end - added_start + added
        target.end = end


_SCALARS = {"int_or_bool": "int", "int": "int", "bytes_or_str": "bytes", "bytes": "bytes",
            "bytearray": "bytearray", "None": "None", "bool": "bool", "str": "str", "float": "float"}
_EMPTY = {"EMPTY_LIST": "list", "EMPTY_TUPLE": "tuple", "EMPTY_DICT": "dict", "EMPTY_SET": "set"}
_FROM_MARK = {"LIST": "list", "TUPLE": "tuple", "DICT": "dict", "FROZENSET": "frozenset"}
_TUPLES = {"TUPLE1": 1, "TUPLE2": 2, "TUPLE3": 3}


def _produce(out: Anatomy, stack: List[_Entry], op, arg, pos: int, end: int) -> None:
    """An operation that makes a new object from what it pops (if anything)."""
    name = op.name
    popped: List[_Entry] = []
    mark = None
    if name in _EMPTY:
        node = Node(_EMPTY[name])
    elif name in _FROM_MARK:
        mark, popped = _pop_to_mark(stack)
        node = Node(_FROM_MARK[name])
        if name == "DICT":
            for key, value in zip(popped[::2], popped[1::2]):
                _adopt(node, "(key)", key)
                _adopt(node, _label_of(key.node), value)
        else:
            for i, e in enumerate(popped):
                _adopt(node, i, e)
    elif name in ("INST", "OBJ"):      # protocols 0 and 1: a class, then its arguments
        mark, popped = _pop_to_mark(stack)
        node = Node("newobj")
        if name == "INST":
            module, _, qualname = str(arg).partition(" ")
            node.children.append((None, _new(out, Node("global", (module, qualname)))))
            out.modules.add(module)
            arguments = popped
        else:
            _adopt(node, None, popped[0])
            arguments = popped[1:]
        args = _new(out, Node("tuple"))
        for i, e in enumerate(arguments):
            _adopt(args, i, e)
        node.children.append((None, args))
    elif name in _TUPLES:
        popped = [stack.pop() for _ in range(_TUPLES[name])][::-1]
        node = Node("tuple")
        for i, e in enumerate(popped):
            _adopt(node, i, e)
    elif name == "GLOBAL":
        module, _, qualname = str(arg).partition(" ")
        node = Node("global", (module, qualname))
        out.modules.add(module)
    elif name == "STACK_GLOBAL":
        popped = [stack.pop(), stack.pop()][::-1]
        module, qualname = (str(e.node.value) if e.node.kind == "str" else "?" for e in popped)
        node = Node("global", (module, qualname))
        out.modules.add(module)
    elif name in ("EXT1", "EXT2", "EXT4"):
        node = Node("global", ("(extension registry)", str(arg)))
    elif name in ("REDUCE", "NEWOBJ", "NEWOBJ_EX"):
        count = {"REDUCE": 2, "NEWOBJ": 2, "NEWOBJ_EX": 3}[name]
        popped = [stack.pop() for _ in range(count)][::-1]
        node = Node("reduce" if name == "REDUCE" else "newobj")
        for e in popped:
            _adopt(node, None, e)
        callee = node.callee()
        if callee in _FILES:
            out.files.append(node)
        elif callee in _IMPORTS:
            args = node.args()
            out.modules.update(a.value for a in args if a.kind == "str" and a.value)
    elif name == "PERSID":
        node = Node("persid", str(arg))
    elif name == "BINPERSID":
        popped = [stack.pop()]
        known = out.persistent.get(id(popped[0].node))
        if known is not None:     # the same persistent id again: the same object
            stack.append(_Entry(known, pos, end, first=False))
            return
        node = out.persistent[id(popped[0].node)] = Node("persid")
        _adopt(node, None, popped[0])
    else:   # a scalar
        kind = _SCALARS.get(op.stack_after[0].name if op.stack_after else "", "value")
        if isinstance(arg, str):
            kind = "str"
        value = arg if isinstance(arg, (int, float)) or (isinstance(arg, str) and len(arg) <= _KEEP_TEXT) \
            else None
        if name in ("NEWTRUE", "NEWFALSE"):
            value = name == "NEWTRUE"
        node = Node(kind, value)
    _new(out, node)
    start = min([pos] + [e.start for e in popped] + ([mark.start] if mark is not None else []))
    oob = sum(e.oob for e in popped)
    node.size = end - start + oob
    stack.append(_Entry(node, start, end, oob))


# ---- reading the tree --------------------------------------------------------

def type_of(node: Node) -> str:
    """What the object is, as far as the stream says."""
    callee = node.callee()
    if callee is not None:
        known = _KNOWN_CALLS.get(callee)
        if known is not None:
            return known
        if node.kind == "newobj" or callee in (("copyreg", "__newobj__"), ("copyreg", "_reconstructor")):
            args = node.args() if node.kind == "reduce" else []
            cls = args[0] if args else node.child(0)
            if cls is not None and cls.kind == "global":
                return _dotted(cls.value)
        return f"{_dotted(callee)}(...)"
    if node.kind == "persid":
        inner = node.child(0)
        first = inner.child(0) if inner is not None else None
        if first is not None and first.value == "buffer":
            flag = inner.child(1)
            return "bytes" if flag is not None and flag.value else "bytearray"
        if first is not None and first.value == "module_dict":
            return "module dict"
        return "persistent object"
    if node.kind == "global":
        return _dotted(node.value)
    return node.kind


def _dotted(value) -> str:
    module, qualname = value
    return qualname if module == "builtins" else f"{module}.{qualname}"


def path_of(node: Node, names: Dict[int, str]) -> str:
    """Where ``node`` first occurs, from the nearest named object
    (``names``: by id of a node)."""
    parts = []
    while id(node) not in names and node.parent is not None:
        parent, key = node.parent, node.key
        if parent.callee() in _MORPHS:
            # a value of a frame pyteleport knows no names for (a suspended generator's)
            parts = [" (in a suspended frame)"]
            node = parent
            continue
        if _call_of(parent) is not None and parent.kind == "tuple":
            pass        # a call's arguments: the call is the object
        elif parent.kind in ("list", "tuple", "set", "frozenset") and isinstance(key, int):
            parts.append(f"[{key}]")
        elif parent.kind == "dict" and key not in (None, "(key)"):
            parts.append(f".{key}" if parent.key == "state" and isinstance(key, str) and key.isidentifier()
                         else f"[{key!r}]")
        node = parent
    head = names.get(id(node), "(internal)")
    return head + "".join(reversed(parts))


def largest(anatomy: Anatomy, total: int, names: Dict[int, str], count: int = 10) -> List[Tuple[str, str, int]]:
    """``(path, type, size)`` of the objects that hold the bulk of the
    payload: each heavy object none of whose parts is a heavy object of its
    own (an array's buffer is the array's, a call's arguments the call's)."""
    heavy = max(64 << 10, total // 100)
    found = []
    for node in anatomy.nodes:
        if node.size < heavy or node.kind == "global" or node.callee() in _MORPHS:
            continue
        if _call_of(node) is not None:
            continue    # the arguments or raw data of a call: the call is the object
        if any(_holds_heavy(c, heavy) for _, c in node.children if c.parent is node and c.size >= heavy):
            continue
        found.append((node.size, path_of(node, names), type_of(node)))
    found.sort(key=lambda t: -t[0])
    return [(path, kind, size) for size, path, kind in found[:count]]


def _call_of(node: Node) -> Optional[Node]:
    """The call (or persistent id) that ``node`` is an argument tuple of, or
    raw data directly in the arguments of (an array's buffer): None for an
    object of its own."""
    parent = node.parent
    if parent is None:
        return None
    if parent.kind in _CALLS and node.key is None:
        return parent
    if node.kind in _RAW and parent.kind in ("tuple", "list") and parent.key is None \
            and parent.parent is not None and parent.parent.kind in _CALLS:
        return parent.parent
    return None


def _holds_heavy(node: Node, heavy: int) -> bool:
    """Whether the part ``node`` is (or holds) a heavy object of its own."""
    if _call_of(node) is not None:
        return node.kind not in _RAW and node.kind not in ("tuple", "list") or any(
            _holds_heavy(c, heavy) for _, c in node.children if c.parent is node and c.size >= heavy)
    return True


def root_item(anatomy: Anatomy, key: str) -> Optional[Node]:
    """The value of ``key`` in the state's root mapping."""
    if not anatomy.roots or anatomy.roots[0].kind != "dict":
        return None
    for label, node in anatomy.roots[0].items():
        if label == key:
            return node
    return None


def morph_fills(morph: Node) -> List[Node]:
    """The values a frame's morph is filled with, in order."""
    if morph.callee() not in _MORPHS:
        return []
    args = morph.args()
    if len(args) < 2 or args[1].kind != "tuple":
        return []
    out = []
    for _, pair in args[1].children:
        value = pair.child(1) if pair.kind == "tuple" else None
        out.append(value)
    return out


def morph_closure(morph: Node) -> List[Node]:
    args = morph.args()
    if morph.callee() != (_REBUILD, "morph_function") or len(args) < 4 or args[3].kind != "tuple":
        return []
    return [c for _, c in args[3].children]


def file_record(node: Node) -> Dict[str, Any]:
    kind = _FILES[node.callee()]
    args = node.args()
    values = [a.value if a.kind in ("str", "int") else None for a in args]
    if kind == "devnull":
        return {"path": "/dev/null", "mode": values[0] if values else None, "position": None}
    return {"path": values[0] if values else None, "mode": values[1] if len(values) > 1 else None,
            "position": values[2] if kind != "closed" and len(values) > 2 else None,
            "closed": kind == "closed"}
