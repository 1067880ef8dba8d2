"""math-verify's last resort, `simplify(gold - pred).is_zero`, skipped where it can only say no.

Why: after its string, structural and numeric comparisons fail, math-verify's `sympy_expr_eq` calls
`sympy_symbolic_eq`, which runs `simplify` on the difference: milliseconds for a wrong radical or fraction
(`2\\sqrt{3}` against `\\sqrt{13}`), most of a checker's time on the bench set's wrong answers. When both sides are
constant numbers whose values, each evaluated to 30 significant digits, differ by more than a billionth of
their size, the difference is not zero, `simplify` (which preserves value) cannot make it zero, and upstream
returns False: so do we, without calling it. Everything else (symbols, sets, matrices, values that do not
evaluate to finite numbers, values that agree to 9 digits) goes to upstream's function unchanged, so every
verdict is upstream's. Installed in the checker workers only (`rewards.worker`), so that `bench/rewards.py`'s
naive loop runs upstream's comparison; `tests/test_rewards_speed.py` checks verdicts with and without it.
"""

from __future__ import annotations

import cmath

_STATE = {"installed": False}
_DIGITS = 30
_RELATIVE_GAP = 1e-9


def constant_value(expr) -> complex | None:
    """The expression's value to `_DIGITS` digits, or None when it is not a finite constant number."""
    import sympy

    if not isinstance(expr, sympy.Expr) or expr.free_symbols:
        return None
    try:
        value = complex(expr.evalf(_DIGITS))
    except (TypeError, ValueError, OverflowError, ArithmeticError, AttributeError):
        return None
    return value if cmath.isfinite(value) else None


def clearly_different(a, b) -> bool:
    """True only when `a` and `b` are constant numbers whose values cannot be equal."""
    x = constant_value(a)
    if x is None:
        return False
    y = constant_value(b)
    return y is not None and abs(x - y) > _RELATIVE_GAP * max(1.0, abs(x), abs(y))


def install() -> bool:
    """Wrap math_verify.grader.sympy_symbolic_eq (idempotent). False when math-verify has no such function,
    which leaves upstream's comparison as it is (slower, same verdicts)."""
    if _STATE["installed"]:
        return True
    from math_verify import grader

    upstream = getattr(grader, "sympy_symbolic_eq", None)
    if upstream is None:
        return False

    def sympy_symbolic_eq(a, b) -> bool:
        try:
            if clearly_different(a, b):
                return False
        except Exception:  # noqa: BLE001 - any doubt: upstream decides
            pass
        return upstream(a, b)

    sympy_symbolic_eq.upstream = upstream
    grader.sympy_symbolic_eq = sympy_symbolic_eq
    _STATE["installed"] = True
    return True


def uninstall() -> None:
    """Upstream's function back (tests compare verdicts both ways)."""
    from math_verify import grader

    if _STATE["installed"]:
        grader.sympy_symbolic_eq = grader.sympy_symbolic_eq.upstream
        _STATE["installed"] = False
