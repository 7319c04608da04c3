"""What the operating system charges a relay per token on this machine, without Python's share:
`python -m bench.relay.oscost`.

Three loops on one loopback TCP connection whose peer is a thread that reads everything:

- `send()` of an 80-byte frame back to back (the peer is busy reading: no wake-up needed);
- the same `send()` with a 0.2 ms sleep between sends (each send must wake the sleeping peer);
- the 0.2 ms sleep alone (what a thread pays to go idle and be woken again).

CPU time of the sending thread (user + system) per iteration, median of `--repeat` runs. A
lightly loaded relay pays the middle two per token (its loop sleeps between tokens); a
saturated one pays roughly the first.
"""

from __future__ import annotations

import argparse
import resource
import socket
import statistics
import threading
import time

FRAME = b"x" * 80


def _thread_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_THREAD)
    return usage.ru_utime + usage.ru_stime


def _drain(sock: socket.socket) -> None:
    while sock.recv(65536):
        pass


def measure(count: int) -> dict[str, float]:
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        peer, _ = server.accept()
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    reader = threading.Thread(target=_drain, args=(peer,), daemon=True)
    reader.start()
    out: dict[str, float] = {}
    try:
        for name, send, pause in (
            ("send, back to back", True, 0.0),
            ("send after a sleep", True, 0.0002),
            ("sleep and wake-up alone", False, 0.0002),
        ):
            t0 = _thread_cpu()
            for _ in range(count):
                if send:
                    client.sendall(FRAME)
                if pause:
                    time.sleep(pause)
            out[name] = (_thread_cpu() - t0) / count * 1e6
    finally:
        client.close()
        reader.join(5)
        peer.close()
    out["send, paced (the two above, subtracted)"] = (
        out["send after a sleep"] - out["sleep and wake-up alone"]
    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.relay.oscost", description=__doc__)
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    runs = [measure(args.count) for _ in range(args.repeat)]
    print("| per iteration | µs of CPU (median of runs) |")
    print("|---|---:|")
    for name in runs[0]:
        print(f"| {name} | {statistics.median(r[name] for r in runs):.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
