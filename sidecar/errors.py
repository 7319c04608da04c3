"""Errors that cross the library boundary, each saying whose fault it is and what to do.

    SidecarError                      base; its message is one line a person can act on
    ├── ConfigError                   the operator's configuration is wrong (fix the flag/file)
    ├── LedgerError                   the database is unusable (migrate it, check the URL)
    ├── UpstreamError                 the model server failed or is unreachable
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
