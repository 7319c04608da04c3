from sidecar.accounting.stream import CountSource, Outcome, StreamAccount


def account(**overrides: object) -> StreamAccount:
    fields: dict[str, object] = dict(
        stream_id="s",
        request_id="r",
        session_id=None,
        model="m",
        tenant="t",
        ingress="ws",
        path="/v1/chat/completions",
        started_at=0.0,
        t_start=10.0,
        prompt_chars=40,
    )
    fields.update(overrides)
    return StreamAccount(**fields)  # type: ignore[arg-type]


def feed(acc: StreamAccount, n: int, start: float = 10.5, step: float = 0.1) -> None:
    for i in range(n):
        acc.on_content(start + i * step, "x")


def test_counts_deltas_without_usage() -> None:
    acc = account()
    feed(acc, 5)
    acc.on_written(5)
    acc.finish(Outcome.COMPLETED, 11.5)
    assert acc.count_source is CountSource.COUNTED
    assert (acc.generated_tokens, acc.delivered_tokens, acc.wasted_tokens) == (5, 5, 0)
    assert acc.prompt_tokens == 10  # estimated from 40 characters
    assert acc.time_to_first_token == 0.5
    assert acc.duration == 1.5


def test_usage_wins_and_scales_delivered_when_chunks_hold_several_tokens() -> None:
    acc = account()
    feed(acc, 10)
    acc.on_usage(7, 20, final=False)  # continuous usage: 2 tokens per delta
    acc.on_written(10)
    acc.on_ack(4)
    acc.finish(Outcome.CLIENT_CANCELLED, 12.0)
    assert acc.count_source is CountSource.USAGE
    assert acc.prompt_tokens == 7
    assert (acc.generated_tokens, acc.delivered_tokens, acc.wasted_tokens) == (20, 8, 12)


def test_ack_decides_for_streams_cut_short_but_not_for_completed_ones() -> None:
    cut = account()
    feed(cut, 6)
    cut.on_written(6)
    cut.on_ack(3)
    cut.finish(Outcome.CLIENT_GONE, 12.0)
    assert (cut.delivered_tokens, cut.wasted_tokens) == (3, 3)
    whole = account()
    feed(whole, 6)
    whole.on_written(6)
    whole.on_ack(3)  # acks lag behind a stream that was written in full
    whole.finish(Outcome.COMPLETED, 12.0)
    assert (whole.delivered_tokens, whole.wasted_tokens) == (6, 0)


def test_unsent_bytes_are_not_delivered() -> None:
    acc = account()
    feed(acc, 8)
    acc.on_written(8)
    acc.finish(Outcome.CLIENT_GONE, 12.0, unsent=3)
    assert (acc.delivered_tokens, acc.wasted_tokens) == (5, 3)


def test_first_outcome_wins() -> None:
    acc = account()
    assert acc.finish(Outcome.CLIENT_CANCELLED, 11.0)
    assert not acc.finish(Outcome.COMPLETED, 12.0)
    assert acc.outcome is Outcome.CLIENT_CANCELLED and acc.t_end == 11.0


def test_acks_beyond_what_was_generated_are_ignored() -> None:
    acc = account()
    feed(acc, 2)
    acc.on_ack(50)
    acc.on_ack(1)
    acc.on_ack(0)
    assert acc.acked == 1


def test_usage_never_decreases_and_nothing_goes_negative() -> None:
    acc = account()
    feed(acc, 3)
    acc.on_usage(5, 3, final=False)
    acc.on_usage(5, 0, final=False)  # a server that reports zeros on an intermediate chunk
    assert acc.generated_tokens == 3
    acc.finish(Outcome.CLIENT_GONE, 11.0, unsent=99)
    assert acc.wasted_tokens == 3 and acc.delivered_tokens == 0


def test_gaps_between_deltas() -> None:
    acc = account()
    assert acc.on_content(10.2, "a") == (1, None)
    seq, gap = acc.on_content(10.25, "b")
    assert seq == 2 and gap is not None and abs(gap - 0.05) < 1e-9


def test_packed_deltas_without_usage_are_estimated_from_the_learned_ratio() -> None:
    acc = account(tokens_per_delta_hint=3.0)  # this model packs ~3 tokens per delta
    feed(acc, 10)
    acc.on_written(10)
    acc.on_ack(4)
    acc.finish(Outcome.CLIENT_CANCELLED, 12.0)
    assert acc.count_source is CountSource.ESTIMATED
    assert (acc.generated_tokens, acc.delivered_tokens, acc.wasted_tokens) == (30, 12, 18)


def test_one_token_per_delta_stays_counted() -> None:
    acc = account(tokens_per_delta_hint=1.01)
    feed(acc, 4)
    assert acc.count_source is CountSource.COUNTED and acc.generated_tokens == 4


def test_recorder_learns_tokens_per_delta_from_completed_streams() -> None:
    from sidecar.accounting.pricing import PriceBook
    from sidecar.accounting.recorder import Recorder
    from sidecar.telemetry.metrics import Metrics

    rows: list[object] = []
    recorder = Recorder(Metrics(), rows.append, PriceBook(), "i", lambda: 0.0)
    done = account(stream_id="a")
    recorder.started(done)
    feed(done, 10)
    done.on_usage(5, 20, final=True)
    done.finish(Outcome.COMPLETED, 12.0)
    recorder.finished(done, 12.0)
    cut = account(stream_id="b")
    recorder.started(cut)
    assert cut.tokens_per_delta_hint == 2.0
    assert len(rows) == 3  # two start checkpoints and one final row


def test_checkpoints_skip_young_and_unchanged_streams() -> None:
    from sidecar.accounting.pricing import PriceBook
    from sidecar.accounting.recorder import Recorder
    from sidecar.telemetry.metrics import Metrics

    rows: list[object] = []
    recorder = Recorder(Metrics(), rows.append, PriceBook(), "i", lambda: 0.0)
    old, young = account(stream_id="old", t_start=10.0), account(stream_id="young", t_start=10.8)
    recorder.started(old)
    recorder.started(young)
    feed(old, 3)
    feed(young, 3)
    assert len(rows) == 2  # the start rows
    assert recorder.checkpoint_all(now_mono=11.5) == 1  # "young" is 0.7 s old: its start row
    assert recorder.checkpoint_all(now_mono=12.5) == 1  # "old" did not move; "young" did
    assert recorder.checkpoint_all(now_mono=13.5) == 0
    old.on_written(2)  # delivery moves too, not only generation
    assert recorder.checkpoint_all(now_mono=14.5) == 1
    old.finish(Outcome.COMPLETED, 14.6)
    recorder.finished(old, 14.6)
    assert recorder.checkpoint_all(now_mono=15.5) == 0 and len(rows) == 6


def test_checkpoints_in_parts_cover_every_stream_once() -> None:
    from sidecar.accounting.pricing import PriceBook
    from sidecar.accounting.recorder import Recorder
    from sidecar.telemetry.metrics import Metrics

    rows: list[object] = []
    recorder = Recorder(Metrics(), rows.append, PriceBook(), "i", lambda: 0.0)
    for n in range(50):
        acc = account(stream_id=f"s{n}", t_start=10.0)
        recorder.started(acc)
        feed(acc, 2)
    counts = [recorder.checkpoint_all(12.0, part=p, parts=10) for p in range(10)]
    assert sum(counts) == 50 and max(counts) < 50
    assert sum(recorder.checkpoint_all(12.5, part=p, parts=10) for p in range(10)) == 0
