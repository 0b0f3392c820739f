"""``--overwrite`` replaces only an output this program wrote: never a study, a run or a folder of the user's files."""

import pytest

from denoise_core.errors import InputError, OutputExists
from results.output import MARKER, check_output, publish, scratch_dir


def build(out, kind="report", page="new"):
    work = scratch_dir(out, kind)
    (work / "index.html").write_text(page)
    (work / "summary.md").write_text(page)
    return work


def test_a_rebuild_with_overwrite_replaces_the_earlier_output(tmp_path):
    out = tmp_path / "report"
    publish(build(out, page="first"), out, overwrite=False)
    assert (out / MARKER).read_text().strip() == "report"
    publish(build(out, page="second"), out, overwrite=True)
    assert (out / "index.html").read_text() == "second"
    assert not list(tmp_path.glob(".report.partial-*"))


def test_a_report_written_before_the_marker_can_be_rebuilt(tmp_path):
    out = tmp_path / "report"
    out.mkdir()
    (out / "index.html").write_text("old")
    (out / "summary.md").write_text("old")
    (out / "curves.csv").write_text("a\n1\n")
    publish(build(out), out, overwrite=True)
    assert (out / "index.html").read_text() == "new" and not (out / "curves.csv").exists()


@pytest.mark.parametrize("holding", ["study.yaml", "best/model.pt", "notes.txt"])
def test_overwrite_refuses_a_directory_this_program_did_not_write(tmp_path, holding):
    out = tmp_path / "mine"
    (out / holding).parent.mkdir(parents=True, exist_ok=True)
    (out / holding).write_text("the user's\n")
    if holding != "notes.txt":
        (out / "index.html").write_text("a page of a study\n")
        (out / "summary.md").write_text("a page of a study\n")
    with pytest.raises(OutputExists, match="was not written by this program"):
        check_output(out, overwrite=True)
    assert (out / holding).read_text() == "the user's\n"


def test_overwrite_refuses_an_output_of_another_kind(tmp_path):
    out = tmp_path / "comparison"
    publish(build(out, "comparison"), out, overwrite=False)
    with pytest.raises(OutputExists, match="as a report"):
        check_output(out, overwrite=True, kind="report")


def test_the_output_may_not_be_or_hold_an_input(tmp_path):
    study = tmp_path / "studies" / "a"
    study.mkdir(parents=True)
    with pytest.raises(InputError, match="holds the input"):
        check_output(study, overwrite=True, kind="comparison", inputs=(study,))
    with pytest.raises(InputError, match="holds the input"):
        check_output(tmp_path / "studies", overwrite=True, kind="comparison", inputs=(study,))
    check_output(study / "report", overwrite=False, inputs=(study,))
