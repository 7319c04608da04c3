"""The client's one exception: an `error` frame from the sidecar, or a failure of the
connection as the client saw it. `code` is machine-readable (the sidecar's own codes pass
through unchanged; the client adds those in `Code`)."""

from __future__ import annotations

from enum import StrEnum

from sidecar.errors import SidecarError


class Code(StrEnum):
    CONNECTION_LOST = "connection_lost"  # every reconnect attempt failed
    UNREACHABLE = "unreachable"  # the first connection could not be opened
    RESUME_EXPIRED = "resume_expired"  # reconnected, but the sidecar no longer holds the answer
    CLOSED = "closed"  # the application closed the client while the answer ran
    SEQUENCE_GAP = "sequence_gap"  # a delta skipped a seq
    PROTOCOL_ERROR = "protocol_error"  # the sidecar sent something that is not protocol v1
    REFUSED = "refused"  # the sidecar refused the upgrade (credential, origin, limits)


class ClientError(SidecarError):
    def __init__(self, code: str, message: str, stream_id: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.stream_id = stream_id

    def for_stream(self, stream_id: str) -> ClientError:
        return ClientError(self.code, str(self), stream_id)
