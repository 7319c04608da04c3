"""The API families of `/v1/*` routes the sidecar passes through unaccounted: the bounded
`route` label of their metrics and the `--passthrough-routes` policy. Pure, and light enough
for the CLI to import while it parses options."""

from __future__ import annotations

from typing import Final

from sidecar.telemetry import names

ALL: Final = "all"
NONE: Final = "none"


def parse_passthrough_routes(text: str) -> frozenset[str] | None:
    """`--passthrough-routes`: `all` (None: every family passes), `none`, or a comma-separated
    list of families (`models,files`; `other` is any /v1 path outside the known families).
    Raises ValueError with the one line to show."""
    names_given = [name.strip().removeprefix("/v1/") for name in text.split(",")]
    names_given = [name for name in names_given if name]
    if names_given == [ALL]:
        return None
    if names_given == [NONE]:
        return frozenset()
    known = (*names.PASSTHROUGH_FAMILIES, names.OTHER_ROUTE)
    unknown = [name for name in names_given if name not in known]
    if unknown or not names_given:
        shown = ", ".join(unknown) if unknown else "nothing"
        raise ValueError(
            f"{shown} is not an API family: use all, none, or a comma-separated list of "
            f"{', '.join(known)}"
        )
    return frozenset(names_given)


def route_label(path: str) -> str:
    """`/v1/models/x` → `/v1/models`; a path outside the known families → `other`."""
    family = path.removeprefix("/v1/").split("/", 1)[0]
    return (
        f"/v1/{family}"
        if path.startswith("/v1/") and family in names.PASSTHROUGH_FAMILIES
        else names.OTHER_ROUTE
    )
