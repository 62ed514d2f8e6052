"""Read the *data* in a pickle stream without unpickling it.

CIFAR's "python version" batches are pickles. haba never hands them to :mod:`pickle` (nor imports it):
this module decodes the opcodes itself and runs a stack machine that only builds inert values: None,
bools, ints, floats, bytes, str, lists, tuples and dicts. A global (``GLOBAL``/``STACK_GLOBAL``) resolves
only through the caller's ``allowed`` table of stand-ins, and ``REDUCE``/``NEWOBJ``/``BUILD`` apply only
to those stand-ins. Any other global, any unknown opcode, or a malformed stream raises
:class:`PickleDataError`, so a tampered file cannot run code: there is no path from its bytes to an
arbitrary callable.

Covers protocols 0 to 4 (what Python 2 and Python 3 write for dicts, lists, strings and numpy arrays).
Python 2 strings (``STRING``/``BINSTRING``/``SHORT_BINSTRING``) come back as ``bytes``, as the standard
library's loader gives them with ``encoding="bytes"``.
"""

from __future__ import annotations

import codecs
import struct
from collections.abc import Callable, Mapping
from typing import Any


class PickleDataError(ValueError):
    """The stream is not a data-only pickle this reader accepts."""


class RefusedGlobal(PickleDataError):
    """The stream names a global that is not in the ``allowed`` table."""

    def __init__(self, module: str, name: str):
        shown = f"{module}.{name}"
        shown = shown if shown.isprintable() else ascii(shown)  # one line, whatever the stream holds
        super().__init__(f"refusing to load {shown} (only plain data and the expected array stand-ins are allowed)")


_SIZED = {  # opcode -> (struct format of the length prefix, result type)
    ord("T"): ("<i", bytes),
    ord("U"): ("<B", bytes),  # BINSTRING, SHORT_BINSTRING (py2 str)
    ord("B"): ("<I", bytes),
    ord("C"): ("<B", bytes),
    0x8E: ("<Q", bytes),  # BINBYTES, SHORT_BINBYTES, 8
    0x96: ("<Q", bytearray),  # BYTEARRAY8
    ord("X"): ("<I", str),
    0x8C: ("<B", str),
    0x8D: ("<Q", str),  # BINUNICODE, SHORT_, 8
}
_FIXED_INTS = {ord("J"): "<i", ord("K"): "<B", ord("M"): "<H"}  # BININT, BININT1, BININT2


def load_data(data: bytes, allowed: Mapping[tuple[str, str], Any]) -> Any:
    """Decode the object in ``data`` (one pickle stream); globals resolve only through ``allowed``."""
    stand_ins = set(map(id, allowed.values()))
    pos, stack, marks, memo = 0, [], [], {}

    def read(n: int) -> bytes:
        nonlocal pos
        if n < 0 or pos + n > len(data):
            raise PickleDataError("truncated stream")
        out = data[pos : pos + n]
        pos += n
        return out

    def line() -> bytes:
        nonlocal pos
        end = data.find(b"\n", pos)
        if end < 0:
            raise PickleDataError("truncated stream")
        out = data[pos:end]
        pos = end + 1
        return out

    def unpack(fmt: str) -> int:
        return struct.unpack(fmt, read(struct.calcsize(fmt)))[0]

    def pop() -> Any:
        if not stack or (marks and marks[-1] == len(stack)):
            raise PickleDataError("stack underflow")
        return stack.pop()

    def pop_mark() -> list:
        if not marks:
            raise PickleDataError("no mark on the stack")
        start = marks.pop()
        items = stack[start:]
        del stack[start:]
        return items

    def resolve(module: str, name: str) -> Any:
        try:
            return allowed[(module, name)]
        except KeyError:
            raise RefusedGlobal(module, name) from None

    def stand_in(obj: Any) -> Any:
        if id(obj) not in stand_ins:
            raise PickleDataError(f"refusing to call {type(obj).__name__} (not an allowed stand-in)")
        return obj

    while True:
        op = read(1)[0]
        if op == ord("."):  # STOP
            if len(stack) != 1 or marks:
                raise PickleDataError("malformed stream at STOP")
            return stack[0]
        if op == 0x80:  # PROTO
            if read(1)[0] > 5:
                raise PickleDataError("unknown pickle protocol")
        elif op == 0x95:  # FRAME
            read(8)
        elif op == ord("("):  # MARK
            marks.append(len(stack))
        elif op == ord("0"):  # POP
            pop()
        elif op == ord("1"):  # POP_MARK
            pop_mark()
        elif op == ord("2"):  # DUP
            if not stack:
                raise PickleDataError("DUP on an empty stack")
            stack.append(stack[-1])
        elif op == ord("N"):
            stack.append(None)
        elif op in (0x88, 0x89):  # NEWTRUE, NEWFALSE
            stack.append(op == 0x88)
        elif op in _FIXED_INTS:
            stack.append(unpack(_FIXED_INTS[op]))
        elif op == ord("I"):  # INT (protocol 0; 01/00 are True/False)
            text = line()
            stack.append(text == b"01" if text in (b"01", b"00") else int(text))
        elif op == ord("L"):  # LONG (protocol 0)
            stack.append(int(line().rstrip(b"L")))
        elif op in (0x8A, 0x8B):  # LONG1, LONG4
            n = read(1)[0] if op == 0x8A else unpack("<i")
            stack.append(int.from_bytes(read(n), "little", signed=True))
        elif op == ord("G"):  # BINFLOAT
            stack.append(unpack(">d"))
        elif op == ord("F"):  # FLOAT
            stack.append(float(line()))
        elif op == ord("S"):  # STRING: a quoted repr
            text = line()
            if len(text) < 2 or text[:1] != text[-1:] or text[:1] not in (b"'", b'"'):
                raise PickleDataError("malformed STRING")
            stack.append(codecs.escape_decode(text[1:-1])[0])
        elif op == ord("V"):  # UNICODE
            stack.append(line().decode("raw-unicode-escape"))
        elif op in _SIZED:
            fmt, kind = _SIZED[op]
            raw = read(unpack(fmt))
            stack.append(raw.decode("utf-8", "surrogatepass") if kind is str else kind(raw))
        elif op == ord("}"):  # EMPTY_DICT
            stack.append({})
        elif op == ord("d"):  # DICT
            items = pop_mark()
            stack.append(dict(zip(items[::2], items[1::2])))
        elif op in (ord("s"), ord("u")):  # SETITEM, SETITEMS
            items = [pop(), pop()][::-1] if op == ord("s") else pop_mark()
            target = stack[-1] if stack else None
            if not isinstance(target, dict) or len(items) % 2:
                raise PickleDataError("SETITEM(S) on a non-dict")
            for k, v in zip(items[::2], items[1::2]):
                target[k] = v
        elif op == ord("]"):  # EMPTY_LIST
            stack.append([])
        elif op == ord("l"):  # LIST
            stack.append(pop_mark())
        elif op in (ord("a"), ord("e")):  # APPEND, APPENDS
            items = [pop()] if op == ord("a") else pop_mark()
            target = stack[-1] if stack else None
            if not isinstance(target, list):
                raise PickleDataError("APPEND(S) on a non-list")
            target.extend(items)
        elif op == ord(")"):  # EMPTY_TUPLE
            stack.append(())
        elif op == ord("t"):  # TUPLE
            stack.append(tuple(pop_mark()))
        elif op in (0x85, 0x86, 0x87):  # TUPLE1..3
            items = [pop() for _ in range(op - 0x84)][::-1]
            stack.append(tuple(items))
        elif op in (ord("p"), ord("q"), ord("r"), 0x94):  # PUT, BINPUT, LONG_BINPUT, MEMOIZE
            key = {
                ord("p"): lambda: int(line()),
                ord("q"): lambda: read(1)[0],
                ord("r"): lambda: unpack("<I"),
                0x94: lambda: len(memo),
            }[op]()
            if not stack:
                raise PickleDataError("memo put on an empty stack")
            memo[key] = stack[-1]
        elif op in (ord("g"), ord("h"), ord("j")):  # GET, BINGET, LONG_BINGET
            key = {ord("g"): lambda: int(line()), ord("h"): lambda: read(1)[0], ord("j"): lambda: unpack("<I")}[op]()
            if key not in memo:
                raise PickleDataError("memo key not found")
            stack.append(memo[key])
        elif op == ord("c"):  # GLOBAL
            module, name = line().decode("utf-8"), line().decode("utf-8")
            stack.append(resolve(module, name))
        elif op == 0x93:  # STACK_GLOBAL
            name, module = pop(), pop()
            if not (isinstance(module, str) and isinstance(name, str)):
                raise PickleDataError("malformed STACK_GLOBAL")
            stack.append(resolve(module, name))
        elif op in (ord("R"), 0x81):  # REDUCE, NEWOBJ: only the allowed stand-ins are callable
            args = pop()
            fn = stand_in(pop())
            if not isinstance(args, tuple):
                raise PickleDataError("REDUCE/NEWOBJ without an argument tuple")
            stack.append(fn(*args))
        elif op == ord("b"):  # BUILD: only on instances of allowed stand-in classes
            state = pop()
            obj = stack[-1] if stack else None
            stand_in(type(obj))
            obj.__setstate__(state)
        else:
            raise PickleDataError(f"unsupported pickle opcode {op:#04x} at byte {pos - 1}")


def load_data_checked(data: bytes, allowed: Mapping[tuple[str, str], Callable[..., Any]]) -> Any:
    """:func:`load_data`, with any decoding failure (bad UTF-8, bad numbers, deep nesting) as
    :class:`PickleDataError`."""
    try:
        return load_data(data, allowed)
    except PickleDataError:
        raise
    except (
        ValueError,
        TypeError,
        IndexError,
        KeyError,
        AttributeError,
        OverflowError,
        RecursionError,
        struct.error,
        UnicodeDecodeError,
    ) as e:
        raise PickleDataError(f"malformed stream ({type(e).__name__})") from None
