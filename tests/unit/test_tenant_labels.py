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


def test_model_labels_only_for_models_the_upstream_answered_and_bounded() -> None:
    from sidecar.telemetry.metrics import ModelLabels

    labels = ModelLabels(max_models=2)
    assert labels("junk-1", answered=False) == "other"  # rejected upstream: maybe not a model
    assert labels("llama", answered=True) == "llama"
    assert labels("llama", answered=False) == "llama"  # known now, even when a stream fails
    assert labels("qwen", answered=True) == "qwen"
    assert labels("mistral", answered=True) == "other"  # past the bound
    assert labels("junk-1", answered=False) == "other"
