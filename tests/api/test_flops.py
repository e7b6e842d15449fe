"""``api.capacity`` (``msad flops``): the paper's capacity column and the whole-detector cost.

The paper's column is w²·1.25 (teacher, HR + LR) and w²·0.25 (student, LR) of the width-1.0 HR backbone
(87.3 GMACs of convolutions at 800×1333): 1.25/0.25, 0.70/0.14, 0.31/0.06, 0.08/0.02. The ratios are measured
over the stages res2–res5: the 7×7 stem (3 input channels at every width) scales with w, not w², and with it
the teachers at w 0.75 and 0.5 would read 0.71 and 0.32.
"""

from __future__ import annotations

import pytest

from msad import api

PAPER = {1.0: (1.25, 0.25), 0.75: (0.70, 0.14), 0.5: (0.31, 0.06), 0.25: (0.08, 0.02)}
REFERENCE_GMACS = 87.3  # S-R50 w1.0 backbone at 800×1333 (design notes)


def _check_ratios(report: api.CapacityReport) -> None:
    assert [row.width for row in report.rows] == list(PAPER)
    for row in report.rows:
        teacher, student = PAPER[row.width]
        w2 = row.width**2
        assert round(row.student_capacity, 2) == student, row
        assert round(row.teacher_capacity, 2) == teacher, row
        assert abs(row.student_capacity - 0.25 * w2) <= 0.003, row
        assert abs(row.teacher_capacity - 1.25 * w2) <= 0.005, row
        # the teacher pays for an HR and an LR pass; the LR pass is the student's backbone
        assert row.teacher_capacity - row.student_capacity == pytest.approx(w2, abs=0.003)
        assert row.backbone_gmacs_lr == pytest.approx(row.backbone_gmacs_hr / 4, rel=0.01)


def test_capacity_ratios_at_a_small_size() -> None:
    # 256×384 halves exactly at every stage, so LR costs exactly 1/4 of HR and teacher = 5 × student
    report = api.capacity(api.paper_recipe(), widths=tuple(PAPER), image_size=(256, 384))
    assert report.image_size == (256, 384) and report.k == 2
    assert report.padded_size == (256, 512)  # the teacher's multiple of 256, for the whole-detector figures
    _check_ratios(report)
    for row in report.rows:
        assert row.teacher_capacity == pytest.approx(5 * row.student_capacity, rel=1e-9)
        # honest whole-detector cost: the student's head runs on HR-sized maps, so it is far above 0.25× the baseline
        assert row.backbone_gmacs_hr < row.baseline_gmacs < row.teacher_gmacs
        assert 0.5 * row.baseline_gmacs < row.student_gmacs < row.baseline_gmacs
        assert row.baseline_params_m < row.teacher_params_m
    # narrower is cheaper
    assert [r.baseline_gmacs for r in report.rows] == sorted((r.baseline_gmacs for r in report.rows), reverse=True)
    assert not any("conv" in op for op in report.skipped_ops)


def test_reference_is_the_paper_backbone_at_800x1333() -> None:
    """Only width 0.25 is built; the width-1.0 reference is then measured on its own (in eval mode)."""
    report = api.capacity(api.paper_recipe(), widths=(0.25,), image_size=(800, 1333))
    assert report.image_size == (800, 1333)
    assert report.reference_gmacs == pytest.approx(REFERENCE_GMACS, rel=0.02)
    (row,) = report.rows
    assert round(row.student_capacity, 2) == 0.02 and round(row.teacher_capacity, 2) == 0.08


@pytest.mark.slow
def test_paper_capacity_table_at_800x1333(tmp_path) -> None:
    report = api.capacity(api.paper_recipe(), widths=tuple(PAPER), json_out=tmp_path / "flops.json")
    assert report.image_size == (800, 1333)
    assert report.reference_gmacs == pytest.approx(REFERENCE_GMACS, rel=0.02)
    _check_ratios(report)
    assert (tmp_path / "flops.json").read_text() == report.to_json()
