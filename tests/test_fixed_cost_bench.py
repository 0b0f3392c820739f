"""bench/fixed_cost.py at its --quick size, a workstation trial of 1 epoch: one row per cost, each a share of a trial,
adding up (not a measurement)."""

from bench_module import load_bench


def test_the_quick_fixed_cost_table_names_every_cost_and_adds_up(fer2013_path, capsys):
    bench = load_bench("fixed_cost.py")
    costs = bench.main(["--quick", "--preset", "workstation", "--epochs", "1", "--data", str(fer2013_path)])
    table = capsys.readouterr().out
    assert "the workstation preset at its quick size: 1 epoch(s) of 256 faces, 64 validation faces" in table
    assert "trial processes reused, 2 for 10 trials" in table  # Tune runs each later trial in the process of an ended one
    assert set(costs) == {"training", *bench.ORDER}
    assert all(seconds >= 0 for seconds in costs.values()) and costs["training"] > 0
    assert all(costs[name] > 0 for name in bench.RAY_AND_TORCH)  # a fresh process imports torch, Ray Tune and torch._dynamo
    rows = {line.split("|")[1].strip(): line.split("|") for line in table.splitlines() if line.startswith("| ") and "---" not in line}
    assert set(bench.ORDER) <= set(rows) and "a trial" in rows
    shares = [float(rows[name][3]) for name in ("training steps", *bench.ORDER)]
    assert abs(sum(shares) - 100) < 0.6  # the rows are the whole trial
    assert float(rows["a trial"][2]) == round(sum(costs.values()), 1)
    theirs = next(row for name, row in rows.items() if name.startswith("of which Ray's and torch's own"))
    assert float(theirs[2]) == round(sum(costs[name] for name in bench.RAY_AND_TORCH), 1)


def test_a_cost_paid_once_per_process_is_spread_over_the_trials_that_reuse_it():
    bench = load_bench("fixed_cost.py")
    assert bench.per_trial(5.0, 1.0, 2, 10) == (2 * 5.0 + 8 * 1.0) / 10
    assert bench.per_trial(5.0, 0.0, 10, 10) == 5.0
