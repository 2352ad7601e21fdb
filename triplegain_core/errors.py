"""A user's mistakes as errors that carry their own one-line answer.

Every mistake a user can make (a bad configuration, a bad file, a server that does not answer,
a name nobody knows) is raised as a :class:`UserMistake`. Its message is the whole answer: the
input it names, what is wrong with it and, where there is one, the fix. The CLI prints it as one
line on stderr and exits with :attr:`UserMistake.exit_code`, with no traceback unless ``-v``.
"""

from __future__ import annotations


class UserMistake(Exception):
    """A mistake in what the user gave: its message is one line naming the input and the fix."""

    # 2 is a usage error, as argparse and the shell conventions have it.
    exit_code = 2
