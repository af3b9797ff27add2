"""``with Twin(...) as twin:`` for every twin, in one place.

Each twin owns threads, descriptors and links that must go when a test ends, however it
ends; a ``with`` block guarantees that. The protocol is the same for all of them (enter
returns the twin, leaving closes it), so it is written once here rather than per twin.
"""

from __future__ import annotations

from types import TracebackType
from typing import Self

__all__ = ["ClosedOnExit"]


class ClosedOnExit:
    """A base whose instances close themselves when a ``with`` block ends."""

    def close(self) -> None:
        """Release everything the instance holds; subclasses say what that is."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
