"""A user's mistakes as errors that carry their own one-line answer.

Every mistake a user can make (a bad configuration, a bad file, a server that does not answer,
a name nobody knows) is raised as a :class:`UserMistake`. Its message is the whole answer: the
input it names, what is wrong with it and, where there is one, the fix. The CLI prints it as one
line on stderr and exits with :attr:`UserMistake.exit_code`, with no traceback unless ``-v``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserMistake(Exception):
    """A mistake in what the user gave: its message is one line naming the input and the fix."""

    # 2 is a usage error, as argparse and the shell conventions have it.
    exit_code = 2


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` when ``name`` is close to one of ``known``, else ``""``.

    The suffix of a one-line message about a name nobody knows: a typo gets its fix.
    """
    close = difflib.get_close_matches(name, list(known), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""
