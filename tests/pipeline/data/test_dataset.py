"""The data set itself: it honours its contract and has what the gates need."""

from __future__ import annotations

from mlgate.pipeline import data


def test_the_data_honours_the_schema_and_the_whole_dataset_rules(raw_frame, params):
    rules = data.dataset_rules(params)
    data.validate(raw_frame, data.contract_schema(params), "data", rules)


def test_enough_rows_and_both_classes(raw_frame, params):
    target = raw_frame[params.data.target]
    assert len(raw_frame) >= 500
    shares = target.value_counts(normalize=True)
    assert set(shares.index) == {0, 1}
    assert shares.min() >= 0.2  # the split stratifies; a minority below 20% needs a rethink


def test_every_sensitive_group_is_large_enough_to_measure(raw_frame, params):
    from mlgate.pipeline.fairness import groups

    for name, spec in params.evaluate.sensitive.items():
        counts = groups(raw_frame, name, spec).value_counts()
        # the test split holds 20%: at least ~20 rows per group there
        assert counts.min() >= 100, f"{name}: group sizes {counts.to_dict()}"


def test_no_row_is_an_exact_duplicate_of_another(raw_frame):
    assert not raw_frame.duplicated().any()


def test_the_target_is_not_leaked_into_a_feature(raw_frame, params):
    target = raw_frame[params.data.target]
    for column in params.features.all:
        by_value = raw_frame.groupby(column)[params.data.target].mean()
        # a feature value that determines the label for a large group would be a leak
        sizable = raw_frame[column].map(raw_frame[column].value_counts()) >= 50
        pure = raw_frame[column].map(by_value).isin([0.0, 1.0]) & sizable
        assert pure.sum() == 0, f"{column} determines {target.name} for {pure.sum()} rows"
