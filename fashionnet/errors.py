"""The one exception type for problems a user can fix."""


class FashionnetError(Exception):
    """A user-fixable problem: the message names the file or option and what to do.

    Entry points print the message alone (no traceback) and exit non-zero.
    """
