"""The subset of SCIM filter expressions Okta's System Log ``filter`` accepts.

Supported: ``attr op "value"`` with eq, ne, co, sw, ew, gt, ge, lt, le; ``attr pr``;
``and``/``or``/``not (...)`` and parentheses. Attribute paths are dotted; a path through
a list (``target.id``) matches if any element does. Invalid expressions raise
``FilterError`` whose message mirrors Okta's E0000053 text.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

_TOKEN = re.compile(r'\s*(\(|\)|"(?:[^"\\]|\\.)*"|[^\s()]+)')
_OPS = ("eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le")

Matcher = Callable[[dict[str, Any]], bool]


class FilterError(ValueError):
    pass


def _values(doc: Any, path: list[str]) -> list[Any]:
    items = [doc]
    for part in path:
        nxt: list[Any] = []
        for it in items:
            if isinstance(it, list):
                for sub in it:
                    if isinstance(sub, dict) and part in sub:
                        nxt.append(sub[part])
            elif isinstance(it, dict) and part in it:
                nxt.append(it[part])
        items = nxt
    flat: list[Any] = []
    for it in items:
        flat.extend(it if isinstance(it, list) else [it])
    return flat


def _compare(op: str, actual: Any, expected: Any) -> bool:
    if op == "eq":
        return bool(actual == expected)
    if op == "ne":
        return bool(actual != expected)
    if not isinstance(actual, str) or not isinstance(expected, str):
        if (
            op in ("gt", "ge", "lt", "le")
            and isinstance(actual, (int, float))
            and isinstance(expected, (int, float))
        ):
            return {
                "gt": actual > expected,
                "ge": actual >= expected,
                "lt": actual < expected,
                "le": actual <= expected,
            }[op]
        return False
    a, e = actual.lower(), expected.lower()
    return {
        "co": e in a,
        "sw": a.startswith(e),
        "ew": a.endswith(e),
        "gt": a > e,
        "ge": a >= e,
        "lt": a < e,
        "le": a <= e,
    }[op]


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[tuple[str, int]] = []
        pos = 0
        while pos < len(text):
            if text[pos:].strip() == "":
                break
            m = _TOKEN.match(text, pos)
            if not m:
                raise self.error("Unparseable input", pos)
            self.tokens.append((m.group(1), m.start(1)))
            pos = m.end()
        self.i = 0

    def error(self, what: str, pos: int | None = None) -> FilterError:
        where = f" at position {pos}" if pos is not None else ""
        return FilterError(f"Invalid filter '{self.text}': {what}{where}")

    def peek(self) -> str | None:
        return self.tokens[self.i][0] if self.i < len(self.tokens) else None

    def take(self) -> tuple[str, int]:
        if self.i >= len(self.tokens):
            raise self.error("Unexpected end of expression")
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def parse(self) -> Matcher:
        if not self.tokens:
            raise self.error("Empty expression")
        m = self.expr()
        if self.i != len(self.tokens):
            tok, pos = self.tokens[self.i]
            raise self.error(f"Unexpected token '{tok}'", pos)
        return m

    def expr(self) -> Matcher:
        left = self.and_expr()
        while (self.peek() or "").lower() == "or":
            self.take()
            right = self.and_expr()
            left = (lambda a, b: lambda d: a(d) or b(d))(left, right)
        return left

    def and_expr(self) -> Matcher:
        left = self.unary()
        while (self.peek() or "").lower() == "and":
            self.take()
            right = self.unary()
            left = (lambda a, b: lambda d: a(d) and b(d))(left, right)
        return left

    def unary(self) -> Matcher:
        tok, pos = self.take()
        if tok.lower() == "not":
            inner = self.unary()
            return lambda d: not inner(d)
        if tok == "(":
            inner = self.expr()
            close, cpos = self.take()
            if close != ")":
                raise self.error("Expected ')'", cpos)
            return inner
        if tok.startswith('"') or tok == ")":
            raise self.error(f"Expected an attribute, got '{tok}'", pos)
        path = tok.split(".")
        op, opos = self.take()
        op = op.lower()
        if op == "pr":
            return lambda d: any(v is not None for v in _values(d, path))
        if op not in _OPS:
            raise self.error(
                f"Unrecognized attribute operator '{op}'. Expected: eq,co,sw,pr,gt,ge,lt,le",
                opos,
            )
        raw, vpos = self.take()
        value: Any
        if raw.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", raw[1:-1])
        elif raw in ("true", "false"):
            value = raw == "true"
        elif raw == "null":
            value = None
        else:
            try:
                value = float(raw) if "." in raw else int(raw)
            except ValueError:
                raise self.error(f"Invalid value '{raw}'", vpos) from None
        return lambda d: any(_compare(op, v, value) for v in _values(d, path))


def compile_filter(text: str) -> Matcher:
    """Compile a filter expression into a predicate over an event dict."""
    return _Parser(text).parse()
