"""The relay's hand-built text frames are byte-identical to what `websockets` would send."""

import pytest
from websockets.frames import Frame, Opcode

from sidecar.ingress.transport import _text_header


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_text_frame_header_matches_websockets(size: int) -> None:
    payload = b"x" * size
    expected = Frame(Opcode.TEXT, payload).serialize(mask=False, extensions=[])
    assert _text_header(payload) + payload == expected
