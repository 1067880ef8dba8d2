"""The one exception a user can cause, and the one place that turns it into an exit status.

Anything raised as `UserError` is printed as a single `error: ...` line and exits 2: no traceback,
because the message already names what to fix. With `MOELAB_DEBUG=1` the whole traceback is
printed instead, including the exception a `raise UserError(...) from None` hid (its `__context__`),
for the times the message is not enough.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable


class UserError(Exception):
    """Bad input from the user (a recipe key, a path, a checkpoint name). Message names the fix."""


def debug_enabled() -> bool:
    return os.environ.get("MOELAB_DEBUG", "") not in ("", "0", "false", "no")


def exit_status(job: Callable[[], int | None]) -> int:
    """Run a command-line job; a `UserError` becomes one `error:` line (or, under MOELAB_DEBUG=1, the
    full chain) and status 2. Every entry point (`moelab`, `python -m rl.train`, `python -m rl.report`)
    goes through here, so the rule is written once."""
    try:
        return int(job() or 0)
    except UserError as err:
        if debug_enabled():
            cause: BaseException | None = err
            seen: set[int] = set()
            while cause is not None and id(cause) not in seen:  # un-hide what `from None` suppressed
                seen.add(id(cause))
                cause.__suppress_context__ = False
                cause = cause.__cause__ or cause.__context__
            traceback.print_exception(err)
        else:
            print(f"error: {err}", file=sys.stderr)
        return 2
