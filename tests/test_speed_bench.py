"""bench/speed.py at its --quick size: the table has its columns and plausible numbers (not a measurement)."""

from __future__ import annotations

import pandas as pd
import pytest

from bench_module import load_bench


def test_the_quick_speed_table_has_a_row_per_size_and_a_ratio_per_variant(capsys):
    speed = load_bench("speed.py")
    rows = speed.main(["--quick", "--threads", "1", "--variants", "fp32,bf16-cl,fp32-cl"])
    assert [(row["width"], row["refine+mirror"], row["threads"]) for row in rows] == [(4, False, 1), (4, True, 1)]
    for row in rows:
        assert list(row) == ["width", "refine+mirror", "threads", "fp32 img/s", "bf16-cl x", "fp32-cl x", "bf16-cl epoch x", "fp32 peak",
                             "bf16-cl peak"]
        assert row["fp32 img/s"] > 0 and 0.05 < row["bf16-cl x"] < 20 and 0.05 < row["fp32-cl x"] < 20 and 0.05 < row["bf16-cl epoch x"] < 20
        assert 0 < row["fp32 peak"] < 1.5 and 0 < row["bf16-cl peak"] < 1.5
    table = capsys.readouterr().out
    assert "| width | refine+mirror | threads | fp32 img/s | bf16-cl x | fp32-cl x | bf16-cl epoch x | fp32 peak | bf16-cl peak |" in table


def test_widths_choose_the_rows_and_faces_the_epoch_size(capsys):
    rows = load_bench("speed.py").main(["--quick", "--threads", "1", "--variants", "fp32,fp32-cl", "--widths", "2", "4", "--faces", "32"])
    assert [(row["width"], row["refine+mirror"]) for row in rows] == [(2, False), (2, True), (4, False), (4, True)]
    assert "base widths [2, 4], 32 faces an epoch;" in capsys.readouterr().out


def test_the_speed_bench_refuses_an_unknown_variant(capsys):
    with pytest.raises(SystemExit):
        load_bench("speed.py").parse_args(["--variants", "fp32,fp8"])
    assert "unknown variant(s) fp8" in capsys.readouterr().err


def test_the_end_to_end_margins_read_a_reports_curves_by_the_names_it_writes():
    speed = load_bench("speed.py")
    rows = [{"model": model, "family": family, "condition": condition, "psnr": psnr + offset}
            for condition, offset in zip(speed.END_TO_END_DENSITIES, (0.0, -5.0, -8.0, -11.0))
            for model, family, psnr in (("AE#1 a", "learned", 38.5), ("AE#2 b", "learned", 38.0), ("switching_median", "classical", 35.0),
                                        ("biharmonic_inpaint", "classical", 38.25))]
    margins = speed.against_classics(pd.DataFrame(rows))
    assert margins["sp:0.1 best"] == 38.5 and margins["sp:0.7 best"] == 27.5
    assert margins["sp:0.5 vs switching median"] == 3.5 and margins["sp:0.3 vs biharmonic"] == 0.25
