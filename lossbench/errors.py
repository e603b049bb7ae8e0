"""The one exception type that means "the user gave bad input".

The CLI catches it, prints its message as one paragraph and exits with status 2;
any other exception is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Bad input: the message names the bad value and what is allowed."""
