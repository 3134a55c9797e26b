"""The one exception podium raises for problems a user can fix (bad config, bad data)."""


class PodiumError(Exception):
    """A user-facing error: the CLI prints its message on one line and exits non-zero."""
