"""The one base class for problems a user can fix; the CLI prints them as one line and exits with status 2."""


class NnUNetAttentionError(Exception):
    """A user-fixable problem: bad input, missing results, unsupported model. Printed as one line, no traceback."""
