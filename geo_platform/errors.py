"""One error hierarchy for the platform.

Invalid input (a bad file, bad parameters) is never retried: running it again
gives the same answer. Transient errors (network, locks) are retried with backoff.
"""


class GeoPlatformError(Exception):
    """Base class of every error geo_platform raises on purpose."""


class InvalidInputError(GeoPlatformError):
    """The input itself is unusable; retrying will not help."""

    def __init__(self, source: str, problem: str) -> None:
        super().__init__(f"{source}: {problem}")
        self.source = source
        self.problem = problem


class TransientError(GeoPlatformError):
    """A temporary failure of a backend (lock, network); worth retrying."""


class BlobChangedError(TransientError):
    """A blob is another version than the one its reader listed: read it again."""


class ConfigurationError(GeoPlatformError):
    """The platform is configured wrongly (settings, collections file)."""
