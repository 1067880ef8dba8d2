"""The one exception a user can cause.

Anything raised as `UserError` is printed by the CLI as a single `error: ...` line and exits 2:
no traceback, because the message already names what to fix.
"""


class UserError(Exception):
    """Bad input from the user (a recipe key, a path, a checkpoint name). Message names the fix."""
