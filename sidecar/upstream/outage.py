"""When to log that the model server is unreachable: at the first failure, then at most once a
`repeat_seconds` while it lasts (with how many requests failed), and once when it answers again.

A dead upstream fails every request and every `/readyz` probe; one line per failure would bury
the log, none at all (as before) left operators guessing. Pure: the caller passes the time.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class OutageLog:
    repeat_seconds: float = 60.0
    down_since: float | None = None
    failures: int = 0  # since the last line about this outage
    _logged_at: float = 0.0

    def failed(self, now: float) -> int | None:
        """A request could not reach the upstream: the failures to report now, or None."""
        self.failures += 1
        if self.down_since is None:
            self.down_since = now
        elif now - self._logged_at < self.repeat_seconds:
            return None
        self._logged_at = now
        reported, self.failures = self.failures, 0
        return reported

    def reached(self, now: float) -> float | None:
        """A request reached the upstream: seconds it was unreachable, or None if it was not."""
        if self.down_since is None:
            return None
        lasted, self.down_since, self.failures = now - self.down_since, None, 0
        return lasted
