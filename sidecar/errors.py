"""Errors that cross the library boundary, each saying whose fault it is and what to do.

    SidecarError                      base; its message is one line a person can act on
    ├── ConfigError                   the operator's configuration is wrong (fix the flag/file)
    ├── LedgerError                   the database is unusable (migrate it, check the URL)
    ├── UpstreamError                 the model server failed or is unreachable
    │   └── UpstreamTimeout           it went silent too long (before the answer, or mid-stream)
    └── client.ClientError            seen by `sidecar.client`: an error frame from the sidecar
                                      or a lost connection (`code` says which)

Client mistakes on the wire are not exceptions: the protocol parser turns them into
`ProtocolError` events that become `error` frames, and the connection lives on.
"""


class SidecarError(Exception):
    """Base of the tree; `str(error)` is a single actionable line."""


class ConfigError(SidecarError):
    """The configuration is invalid; the message names the option and the fix."""


class LedgerError(SidecarError):
    """The ledger database cannot be used as it is."""


class UpstreamError(SidecarError):
    """The upstream model server answered with an error or could not be reached."""

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


TIMEOUT_FLAGS = {"first_byte": "--upstream-first-byte-timeout", "idle": "--upstream-idle-timeout"}


class UpstreamTimeout(UpstreamError):
    """The model server sent nothing for too long; `phase` says when: "first_byte" (before the
    answer's first body byte) or "idle" (between two body bytes). Its connection was closed."""

    def __init__(self, phase: str, seconds: float) -> None:
        when = "after the request" if phase == "first_byte" else "while streaming"
        message = f"model server sent nothing for {seconds:g} s {when} ({TIMEOUT_FLAGS[phase]})"
        super().__init__("upstream_timeout", message, 504)
        self.phase = phase
        self.seconds = seconds
