"""math-verify's LaTeX parser in ANTLR's two-stage mode: SLL first, full LL only where SLL fails.

Why: parsing is most of math-verify's cost (tens of milliseconds for an interval such as `(2, 12]`), and almost
all of it is ANTLR's full-context LL prediction, which latex2sympy2_extended runs on every string.
ANTLR's own recipe for speed is two stages (`antlr4.atn.PredictionMode`, SLL): "the parser will either
return a correct parse tree (i.e. the same parse tree that would be returned with the LL prediction
mode), or it will report a syntax error". So: parse with SLL; on any exception (a syntax error, which
latex2sympy's listener raises, or anything the conversion raises), parse again with LL, exactly as
upstream does. The result is upstream's result, several times faster on the bench set's answers (LL is
still needed for some inputs: `x^2 + 6x + 9` is not SLL).
Upstream is missing this (latex2sympy2_extended 1.11 always builds its parser in LL mode), so we wrap
its `_Latex2Sympy.parse`. Installed in the checker workers only (`rewards.equivalence` imports it);
`tests/test_rewards_speed.py` checks that both modes parse every answer of the bench set and of the
held-out cases identically.
"""

from __future__ import annotations

from contextlib import contextmanager

_STATE = {"installed": False, "enabled": True}


def install() -> bool:
    """Wrap latex2sympy2_extended's parser (idempotent). False when its internals are not the ones this
    was written against: then upstream's LL-only parse stays, which is slower and gives the same answers."""
    if _STATE["installed"]:
        return True
    try:
        from antlr4.atn.PredictionMode import PredictionMode
        from latex2sympy2_extended.latex2sympy2 import _Latex2Sympy
    except ImportError:
        return False
    create_parser, parse = getattr(_Latex2Sympy, "create_parser", None), getattr(_Latex2Sympy, "parse", None)
    if create_parser is None or parse is None:
        return False

    def create_in_mode(self, latex_str):
        parser = create_parser(self, latex_str)
        parser._interp.predictionMode = getattr(self, "_moelab_prediction_mode", PredictionMode.LL)
        return parser

    def parse_two_stage(self, latex_str):
        if not _STATE["enabled"]:
            return parse(self, latex_str)
        outer = getattr(self, "_moelab_prediction_mode", PredictionMode.LL)  # nested parses (function args)
        try:
            self._moelab_prediction_mode = PredictionMode.SLL
            try:
                return parse(self, latex_str)
            except Exception:  # noqa: BLE001 - not SLL (or a real error, which LL raises again)
                self._moelab_prediction_mode = PredictionMode.LL
                return parse(self, latex_str)
        finally:
            self._moelab_prediction_mode = outer

    _Latex2Sympy.create_parser = create_in_mode
    _Latex2Sympy.parse = parse_two_stage
    _STATE["installed"] = True
    return True


@contextmanager
def ll_only():
    """Upstream's LL-only parse for the duration (the tests compare both modes)."""
    previous, _STATE["enabled"] = _STATE["enabled"], False
    try:
        yield
    finally:
        _STATE["enabled"] = previous
