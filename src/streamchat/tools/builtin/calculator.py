"""calculator: arithmetic the model should not do in its head.

The expression is parsed with Python's own parser, and only numbers, + - * / ** (or the Unicode
minus, times and division signs), unary signs and parentheses are evaluated: nothing is run.
Arithmetic is decimal (0.1 + 0.2 is 0.3) at a fixed precision, and a result past a bound, a
division by zero, an expression too long or too deep, or anything else is a ToolError the model
reads, never a crash or a hang.
"""

from __future__ import annotations

import ast
import decimal
import operator
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, Field

from streamchat.tools import ToolConfig, ToolContext, ToolError

#: Longest expression taken.
MAX_CHARS = 1000
#: Deepest nesting of operations taken.
MAX_DEPTH = 100
#: Significant digits of every result (as IEEE decimal128).
PRECISION = 34
#: A result's decimal exponent stays within ±this, inside what a JSON number (a double) holds: past it, a
#: result is "too large" rather than infinity.
MAX_EXPONENT = 300
#: Unicode operators people (and models) write, and what they mean.
_UNICODE = str.maketrans({"\N{MINUS SIGN}": "-", "\N{MULTIPLICATION SIGN}": "*", "\N{DIVISION SIGN}": "/"})
#: Larger integers are given as floats, since JSON readers (JavaScript's) hold integers exactly only up to it.
_EXACT_INTEGERS = 2**53

_BINARY: dict[type[ast.operator], Callable[[Decimal, Decimal], Decimal]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Decimal], Decimal]] = {ast.USub: operator.neg, ast.UAdd: operator.pos}
_SYMBOLS = {ast.FloorDiv: "//", ast.Mod: "%", ast.BitXor: "^", ast.MatMult: "@", ast.BitAnd: "&", ast.BitOr: "|",
            ast.LShift: "<<", ast.RShift: ">>", ast.Invert: "~", ast.Not: "not"}
#: The operators as people write them, for messages and descriptions.
_OPERATORS = "+ - * / ** (or \N{MINUS SIGN} \N{MULTIPLICATION SIGN} \N{DIVISION SIGN})"
_ALLOWED = f"only numbers, {_OPERATORS}, signs and parentheses are allowed"


class CalculatorInput(BaseModel):
    expression: str = Field(min_length=1, max_length=MAX_CHARS,
                            description="Arithmetic to evaluate, e.g. (2.5 + 3) * 4 ** 2 / -8")


config = ToolConfig(
    name="calculator",
    description=f"Evaluate an arithmetic expression exactly (decimal): {_OPERATORS}, parentheses, "
                "decimals and negative numbers. Use it for any calculation instead of working it out.",
    input=CalculatorInput,
    timeout_seconds=5,
)


async def handler(args: CalculatorInput, ctx: ToolContext) -> dict[str, Any]:
    return {"expression": args.expression, "result": as_json(calculate(args.expression))}


def calculate(expression: str) -> Decimal:
    """The value of `expression`, or ToolError saying why there is none."""
    if len(expression) > MAX_CHARS:
        raise ToolError(f"the expression is longer than {MAX_CHARS} characters")
    text = expression.translate(_UNICODE).strip()
    if not text:
        raise ToolError("the expression is empty")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as error:
        raise ToolError(f"not an arithmetic expression: {error.msg}") from None
    except ValueError as error:  # a NUL character
        raise ToolError(f"not an arithmetic expression: {error}") from None
    except (RecursionError, MemoryError):
        raise ToolError("the expression is nested too deeply") from None
    context = decimal.Context(prec=PRECISION, Emax=MAX_EXPONENT, Emin=-MAX_EXPONENT,
                              traps=[decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow])
    try:
        with decimal.localcontext(context):
            return _value(tree.body, 0)
    except decimal.DivisionByZero:
        raise ToolError("division by zero") from None
    except decimal.Overflow:
        raise ToolError(f"the result is too large (past 1e{MAX_EXPONENT})") from None
    except decimal.InvalidOperation:
        raise ToolError("the result is undefined (0 / 0, or a fractional power of a negative number)") from None


def _value(node: ast.expr, depth: int) -> Decimal:
    if depth > MAX_DEPTH:
        raise ToolError(f"the expression is nested more than {MAX_DEPTH} deep")
    if isinstance(node, ast.Constant):
        return _number(node.value)
    if isinstance(node, ast.BinOp):
        binary = _BINARY.get(type(node.op))
        if binary is None:
            raise _refused_operator(node.op)
        left, right = _value(node.left, depth + 1), _value(node.right, depth + 1)
        return binary(left, right)
    if isinstance(node, ast.UnaryOp):
        unary = _UNARY.get(type(node.op))
        if unary is None:
            raise _refused_operator(node.op)
        return unary(_value(node.operand, depth + 1))
    raise ToolError(f"{_described(node)} is not allowed: {_ALLOWED}")


def _number(value: object) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ToolError(f"{value!r} is not a number: {_ALLOWED}")
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        raise ToolError(f"a number in the expression is too large (past 1e{MAX_EXPONENT})")
    # A float literal's shortest text is what was written (0.1 stays 0.1, not its binary neighbour).
    return +Decimal(repr(value) if isinstance(value, float) else value)


def _refused_operator(op: ast.operator | ast.unaryop) -> ToolError:
    symbol = _SYMBOLS.get(type(op), type(op).__name__)
    hint = " (write ** for a power)" if isinstance(op, ast.BitXor) else ""
    return ToolError(f"the operator {symbol} is not allowed{hint}: {_ALLOWED}")


def _described(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return f"the name {node.id!r}"
    if isinstance(node, ast.Attribute):
        return f"the attribute {node.attr!r}"
    if isinstance(node, ast.Call):
        return "a function call"
    if isinstance(node, ast.Compare):
        return "a comparison"
    if isinstance(node, ast.BoolOp):
        return "and / or"
    return f"a {type(node).__name__.lower()}"


def as_json(value: Decimal) -> int | float:
    """A JSON number: an integer when the result is one (and JSON readers hold it exactly), else a float."""
    if value == value.to_integral_value() and abs(value) < _EXACT_INTEGERS:
        return int(value)
    return float(value)
