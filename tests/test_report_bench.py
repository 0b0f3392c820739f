"""bench/report.py --study-budget's table: the study, its first report, the share against the budget, then the steps."""

import pandas as pd

from bench_module import load_bench


def test_the_budget_table_says_whether_the_report_is_within_a_third_of_the_study():
    bench = load_bench("report.py")
    steps = pd.DataFrame({"step": ["hold-out", "leaderboard"], "seconds": [4.64, 30.0]})
    filters = pd.DataFrame({"baseline": ["bm3d"], "conditions": [3], "test_faces": [4], "cpu_s": [25.9]})
    rows = bench.budget_rows(288.0, 79.4, steps, filters)
    assert [row["seconds"] for row in rows] == [288.0, 79.4, 96.0, 4.6, 30.0, 25.9]
    assert rows[2]["what"] == "report / study: 0.28 against a budget of 0.33: met"
    assert rows[3]["what"] == "report step: hold-out" and rows[5]["what"] == "filter bm3d (3 conditions, 4 test faces), CPU"
    over = bench.budget_rows(288.0, 166.0, steps, filters)[2]
    assert over["what"] == "report / study: 0.58 against a budget of 0.33: NOT met" and over["seconds"] == 96.0
    table = bench.markdown_table(rows)
    assert [cell.strip() for cell in table[0].split("|")[1:3]] == ["what", "seconds"] and table[4].split("|")[2].strip() == "96"
