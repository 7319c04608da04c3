from sidecar.telemetry.metrics import TenantLabels


def test_first_tenants_are_labelled_and_the_rest_fold_into_other() -> None:
    labels = TenantLabels(2)
    assert [labels(t) for t in ("a", "b", "c", "a")] == ["a", "b", "other", "a"]


def test_a_busy_late_tenant_is_promoted_but_cardinality_stays_bounded() -> None:
    labels = TenantLabels(2)
    for _ in range(3):
        labels("a")
    labels("b")  # b has 1 stream
    seen = [labels("big") for _ in range(3)]
    assert seen == ["other", "big", "big"]  # overtook b's count on its second stream
    for n in range(100):  # many one-off tenants never earn a label
        for _ in range(2):
            labels(f"t{n}")
    distinct = {labels(t) for t in ("a", "b", "big", *(f"t{n}" for n in range(100)))}
    assert len(distinct - {"other"}) <= 4  # at most 2 * top_n labels, ever
    assert len(labels._candidates) <= 16  # the heavy-hitters table is bounded
