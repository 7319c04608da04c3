"""Who is connected right now: the live sessions view behind the admin `GET /sessions`, the
`GET /ui` page and `sidecar top` (DESIGN §8)."""
