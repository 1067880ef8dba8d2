"""Legitimate programs keep their answers under every isolation layer: the seccomp filter, the
descriptor limit and bubblewrap's read-only view must not break what arithmetic code does with the
standard library, sympy and numpy (OpenMathInstruct `<llm-code>` blocks and TinyGSM functions)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import ISOLATION_MODES, expected_isolation, require_isolation

from rewards.sandbox import run_code

PROGRAMS = {  # name -> (program, answer as the sandbox formats it)
    "tinygsm": ("def simple_math_problem():\n    eggs = 16 - 3 - 4\n    return eggs * 2\n", "18"),
    "float": ("price = 2.5\nprice * 4", "10"),
    "fractions": ("from fractions import Fraction\nFraction(3, 4) + Fraction(1, 4) * 3", "3/2"),
    "decimal": ("from decimal import Decimal\nDecimal('0.1') * 3", "0.3"),
    "math": ("import math\nmath.comb(10, 3) + math.factorial(4)", "144"),
    "itertools": ("import itertools\nsum(1 for p in itertools.permutations(range(5)) if p[0] < p[-1])", "60"),
    "statistics": ("import statistics\nstatistics.median([3, 1, 4, 1, 5, 9, 2])", "3"),
    "datetime": ("import datetime\n(datetime.date(2024, 3, 1) - datetime.date(2024, 2, 1)).days", "29"),
    "random seeded": ("import random\nrandom.seed(0)\nlen([random.random() for _ in range(5)])", "5"),
    "re": ("import re\nlen(re.findall(r'\\d+', 'a1b22c333'))", "3"),
    "collections": ("from collections import Counter\nCounter('mississippi').most_common(1)[0][1]", "4"),
    "printed": ("for i in range(3):\n    print(i * 7)", "14"),
    "sympy solve": ("from sympy import symbols, solve\nx = symbols('x')\nmax(solve(x**2 - 5*x + 6, x))", "3"),
    "sympy rational": ("import sympy as sp\nsp.Rational(1, 4) + sp.Rational(1, 4)", "\\frac{1}{2}"),
    "sympy simplify": ("from sympy import sqrt, simplify\nsimplify(sqrt(8) / 2)", "\\sqrt{2}"),
    "sympy nsolve": ("from sympy import nsolve, Symbol, sin\nx = Symbol('x')\nround(float(nsolve(sin(x) - 0.5, x, 0.5)), 6)",
                     "0.523599"),
    "sympy integrate": ("from sympy import integrate, Symbol\nx = Symbol('x')\nintegrate(3*x**2, (x, 0, 2))", "8"),
    "sympy limit": ("from sympy import limit, Symbol, sin\nx = Symbol('x')\nlimit(sin(x) / x, x, 0)", "1"),
    "sympy matrix": ("from sympy import Matrix\nMatrix([[1, 2], [3, 4]]).det()", "-2"),
    "sympy factorint": ("from sympy import factorint\nsum(factorint(360).values())", "6"),
    "sympy series": ("from sympy import series, Symbol, exp\nx = Symbol('x')\nseries(exp(x), x, 0, 3).removeO().subs(x, 1)",
                     "\\frac{5}{2}"),
    "sympy lambdify": ("from sympy import lambdify, Symbol\nx = Symbol('x')\nf = lambdify(x, x**2 + 1)\nf(3)", "10"),
    "numpy linalg": ("import numpy as np\nnp.linalg.solve([[2, 1], [1, 3]], [3, 5])[1]", "1.4"),
    "numpy mean": ("import numpy as np\nfloat(np.mean([1, 2, 3, 4]))", "2.5"),
    "numpy polyfit": ("import numpy as np\nround(float(np.polyfit([0, 1, 2], [1, 3, 5], 1)[0]), 6)", "2"),
    "numpy random": ("import numpy as np\nrng = np.random.default_rng(0)\nint(rng.integers(0, 10, 100).size)", "100"),
    "numpy fft": ("import numpy as np\nround(float(np.abs(np.fft.fft([1, 0, 0, 0])).sum()), 6)", "4"),
    "numpy median": ("import numpy as np\nfloat(np.median([5, 1, 3]))", "3"),
}


@pytest.mark.slow
@pytest.mark.parametrize("mode", ISOLATION_MODES)
def test_legitimate_programs_keep_their_answers(mode):
    require_isolation(mode)
    with ThreadPoolExecutor(2) as pool:
        results = dict(zip(PROGRAMS, pool.map(lambda item: run_code(item[0], isolation=mode), PROGRAMS.values())))
    wrong = {name: result for name, result in results.items() if result.answer != PROGRAMS[name][1]}
    assert wrong == {}
    expected = expected_isolation(mode)
    assert {result.isolation for result in results.values()} == {expected}
