"""The benchmark suite's command line and statement counting (the suite itself runs in CI with --quick)."""

import pytest
from django.db import connection

from bench.__main__ import _arguments
from bench.workloads.profiling import count_queries


def test_an_unknown_workload_is_refused_with_the_known_ones_named(capsys):
    with pytest.raises(SystemExit) as exit_info:
        _arguments(["--only", "W1,W9"])

    assert exit_info.value.code == 2
    assert "unknown workloads ['W9']; choose from W1, W2, W3, W4, W5, W6, W7" in capsys.readouterr().err


def test_workloads_that_reuse_w1s_agents_bring_w1_and_run_in_suite_order():
    assert _arguments(["--only", "w5, W4"]).selected == ["W1", "W4", "W5"]
    assert _arguments(["--quick"]).output is None  # a quick run writes no report unless asked


@pytest.mark.django_db
def test_an_executemany_counts_as_one_statement_per_row():
    def work():
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.executemany(
                "UPDATE events_checkpoint SET position = position WHERE id = %s", [[1], [2], [3]]
            )

    per_call, round_trips, kinds = count_queries(work, 2)

    assert per_call == 4
    assert round_trips == 2
    assert kinds["UPDATE events_checkpoint"] == 3


@pytest.mark.postgres
@pytest.mark.django_db
def test_a_multi_statement_query_is_one_round_trip_and_counts_each_statement():
    def work():
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT 1; UPDATE events_checkpoint SET position = position WHERE id = 0; SAVEPOINT x"
            )

    per_call, round_trips, kinds = count_queries(work, 2)

    assert (per_call, round_trips) == (3, 1)
    assert (kinds["SELECT ?"], kinds["UPDATE events_checkpoint"], kinds["SAVEPOINT"]) == (1, 1, 1)


def test_alternating_calls_take_turns_and_give_each_works_median():
    from bench.workloads.common import per_call_alternating

    calls = []
    medians = per_call_alternating(
        [lambda: calls.append("deep"), lambda: calls.append("shallow")], calls=3, max_seconds=60
    )

    assert calls == ["deep", "shallow"] * 3
    assert len(medians) == 2
    assert all(median >= 0 for median in medians)
