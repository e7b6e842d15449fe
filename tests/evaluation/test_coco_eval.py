"""CocoEvaluator against a tiny in-memory COCO ground truth (non-contiguous category ids 1 and 7)."""

import math

import evalhelpers as h
import pytest
import torch

from msad.evaluation import METRIC_NAMES, CocoEvaluator
from msad.structures import Detections


def evaluate(*pairs) -> tuple[dict[str, float], CocoEvaluator]:
    evaluator = CocoEvaluator(h.make_coco(), h.CATEGORY_IDS)
    for image_id, det in pairs:
        evaluator.add([image_id], [det])
    evaluator.gather()  # no process group: a no-op
    return evaluator.summarize(), evaluator


def test_perfect_detections_give_100():
    metrics, evaluator = evaluate((10, h.perfect(10)), (20, h.perfect(20)))
    assert list(metrics) == list(METRIC_NAMES)
    assert metrics["AP"] == pytest.approx(100.0) and metrics["AP50"] == pytest.approx(100.0)
    assert metrics["AP75"] == pytest.approx(100.0)
    assert metrics["APs"] == pytest.approx(100.0) and metrics["APm"] == pytest.approx(100.0)
    assert math.isnan(metrics["APl"])  # no large ground truth: pycocotools' -1 is reported as nan
    assert "Average Precision" in evaluator.summary_text and "maxDets=100" in evaluator.summary_text
    assert evaluator.per_category_ap() == pytest.approx({1: 100.0, 7: 100.0})


def test_perfect_detections_print_nothing(capsys):
    evaluate((10, h.perfect(10)), (20, h.perfect(20)))
    assert capsys.readouterr().out == ""


def test_wrong_labels_give_0():
    metrics, _ = evaluate((10, h.perfect(10, swap_labels=True)), (20, h.perfect(20, swap_labels=True)))
    assert metrics["AP"] == 0.0 and metrics["AP50"] == 0.0 and metrics["APs"] == 0.0


def test_half_the_objects_found_is_strictly_between():
    metrics, evaluator = evaluate((10, h.perfect(10)), (20, h.empty()))  # image 20's objects are missed
    assert 0.0 < metrics["AP"] < 100.0 and metrics["AP"] == pytest.approx(50.5, abs=1.0)
    assert 0.0 < metrics["AP50"] < 100.0
    one_per_image, _ = evaluate((10, h.perfect(10, keep=1)), (20, h.perfect(20, keep=1)))  # the cats only
    assert 0.0 < one_per_image["AP"] < 100.0
    assert evaluator.image_ids == [10, 20]


def test_boxes_are_xyxy_in_the_original_frame():
    shifted = h.perfect(10)
    shifted = Detections(shifted.boxes + torch.tensor([0.0, 0.0, 30.0, 30.0]), shifted.scores, shifted.labels)
    metrics, _ = evaluate((10, shifted), (20, h.perfect(20)))
    assert metrics["AP"] < 90.0  # a box 30 px too large misses at the high IoU thresholds


def test_only_received_images_count():
    # image 30 has ground truth but was never add()-ed: it must not count as missed
    metrics, evaluator = evaluate((10, h.perfect(10)), (20, h.perfect(20)))
    assert metrics["AP"] == pytest.approx(100.0)
    assert list(evaluator.coco_eval.params.imgIds) == [10, 20]
    # once it is received without detections, its object is missed
    metrics, _ = evaluate((10, h.perfect(10)), (20, h.perfect(20)), (30, h.empty()))
    assert metrics["AP"] < 100.0


def test_no_detections_give_zeros_not_minus_one():
    metrics, evaluator = evaluate((10, h.empty()), (20, h.empty()))
    assert metrics == {name: 0.0 for name in METRIC_NAMES}
    assert evaluator.per_category_ap() == {} and evaluator.summary_text == ""
    assert evaluate()[0] == {name: 0.0 for name in METRIC_NAMES}  # no images at all


def test_duplicate_image_ids_keep_the_first_detections():
    evaluator = CocoEvaluator(h.make_coco(), h.CATEGORY_IDS)
    evaluator.add([10, 20, 10], [h.perfect(10), h.perfect(20), h.perfect(10, swap_labels=True)])
    assert len(evaluator) == 2 and evaluator.summarize()["AP"] == pytest.approx(100.0)


def test_bad_inputs_are_refused():
    evaluator = CocoEvaluator(h.make_coco(), h.CATEGORY_IDS)
    with pytest.raises(ValueError, match="image id 99"):
        evaluator.add([99], [h.perfect(10)])
    with pytest.raises(ValueError, match="labels must be in"):
        evaluator.add([10], [Detections(torch.zeros(1, 4), torch.ones(1), torch.tensor([2]))])
    with pytest.raises(ValueError, match="2 image ids but 1"):
        evaluator.add([10, 20], [h.perfect(10)])


@pytest.mark.parametrize("backend", ["pycocotools", "faster_coco_eval"])
def test_a_ground_truth_with_a_subset_of_the_classes_is_evaluated_on_its_own(backend: str):
    if backend == "faster_coco_eval":
        pytest.importorskip("faster_coco_eval")
    evaluator = CocoEvaluator(h.make_coco(), [*h.CATEGORY_IDS, 3], backend=backend)  # the model also knows category 3
    extra = Detections(torch.tensor([[0.0, 0.0, 9.0, 9.0]]), torch.tensor([0.99]), torch.tensor([2]))
    for image_id in (10, 20):
        det = h.perfect(image_id)
        evaluator.add([image_id], [Detections(torch.cat([det.boxes, extra.boxes]), torch.cat([det.scores, extra.scores]),
                                              torch.cat([det.labels, extra.labels]))])
    assert evaluator.summarize()["AP"] == pytest.approx(100.0)
    assert evaluator.per_category_ap() == pytest.approx({1: 100.0, 7: 100.0})


@pytest.mark.timeout(120)
def test_sharded_over_two_gloo_ranks():
    from msad.engine import launch

    metrics, image_ids = launch(h.sharded_evaluation, num_procs=2, device="cpu")
    assert image_ids == [10, 20]
    assert metrics["AP"] == pytest.approx(100.0)  # rank 0's copy of image 20 was kept, rank 1's dropped


def test_evaluate_coco_maps_predictions_back_to_the_original_frame(tmp_path):
    """msad.tasks.evaluation_loop.evaluate_coco end to end on a synthetic COCO set resized ×1.5 (an oracle predictor)."""
    from msad.data import CocoDetection, Collator, ResizeShortestEdge, generate_synthetic_coco
    from msad.tasks.evaluation_loop import evaluate_coco

    summary = generate_synthetic_coco(tmp_path, train=0, val=3, seed=1, image_size=(64, 96), objects_per_image=(2, 4))
    dataset = CocoDetection(tmp_path / "val", summary.annotations_file("val"), train=False,
                            transforms=ResizeShortestEdge([96], 1000))
    targets = [dataset[i][1] for i in range(len(dataset))]  # in the batch (resized) frame
    calls = []

    def oracle(images, sizes):
        first = sum(len(c) for c in calls)
        calls.append(sizes)
        return [Detections(t.boxes, torch.ones(len(t.labels)), t.labels) for t in targets[first:first + len(sizes)]]

    metrics = evaluate_coco(oracle, dataset, collate=Collator(), batch_size=2, num_workers=0)
    assert calls and calls[0][0] == (96, 144)  # the predictor saw the resized images
    assert metrics["AP"] == pytest.approx(100.0) and metrics["AP75"] == pytest.approx(100.0)


def _synthetic_ground_truth_and_detections(seed: int = 0):
    """40 images, 5 categories, objects of every COCO size (some crowd), noisy and false detections."""
    import contextlib
    import io

    import numpy as np
    from pycocotools.coco import COCO

    rng = np.random.default_rng(seed)
    categories = [3, 1, 9, 4, 7]
    images, annotations, detections = [], [], {}
    for image_id in range(1, 41):
        images.append({"id": image_id, "width": 640, "height": 480, "file_name": f"{image_id}.jpg"})
        rows = []
        for _ in range(rng.integers(0, 9)):
            w, h = np.clip(rng.lognormal(3.5, 1.0, 2), 4, 400)
            x, y = rng.uniform(0, 640 - w), rng.uniform(0, 480 - h)
            category = int(rng.choice(categories))
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": category,
                                "bbox": [x, y, w, h], "area": w * h, "iscrowd": int(rng.random() < 0.05)})
            if rng.random() < 0.8:
                jitter = rng.normal(0, 0.08, 4) * [w, h, w, h]
                label = categories.index(category) if rng.random() < 0.9 else int(rng.integers(0, 5))
                rows.append(([x + jitter[0], y + jitter[1], x + w + jitter[2], y + h + jitter[3]], rng.random(), label))
        for _ in range(rng.integers(0, 6)):
            x, y = rng.uniform(0, 600), rng.uniform(0, 440)
            rows.append(([x, y, x + rng.uniform(5, 200), y + rng.uniform(5, 200)], rng.random() * 0.5, int(rng.integers(0, 5))))
        boxes = torch.tensor([r[0] for r in rows], dtype=torch.float32).reshape(-1, 4)
        detections[image_id] = Detections(boxes, torch.tensor([r[1] for r in rows], dtype=torch.float32),
                                          torch.tensor([r[2] for r in rows], dtype=torch.int64))
    coco = COCO()
    coco.dataset = {"images": images, "annotations": annotations,
                    "categories": [{"id": c, "name": f"c{c}"} for c in sorted(categories)]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco, categories, detections


def test_faster_coco_eval_gives_the_same_12_metrics_as_pycocotools():
    pytest.importorskip("faster_coco_eval")
    coco, categories, detections = _synthetic_ground_truth_and_detections()
    stats, per_class = {}, {}
    for backend in ("pycocotools", "faster_coco_eval"):
        evaluator = CocoEvaluator(coco, categories, backend=backend)
        evaluator.add(list(detections), list(detections.values()))
        metrics = evaluator.summarize()
        assert 5 < metrics["AP"] < 95 and all(math.isfinite(v) for v in metrics.values())  # not a degenerate set
        stats[backend], per_class[backend] = list(evaluator.coco_eval.stats[:12]), evaluator.per_category_ap()
    assert len(stats["faster_coco_eval"]) == 12
    assert max(abs(a - b) for a, b in zip(stats["pycocotools"], stats["faster_coco_eval"], strict=True)) <= 1e-4
    assert per_class["pycocotools"].keys() == per_class["faster_coco_eval"].keys()
    assert all(abs(per_class["pycocotools"][c] - per_class["faster_coco_eval"][c]) <= 1e-2 for c in categories)


def test_missing_faster_coco_eval_is_one_line_naming_the_extra(monkeypatch):
    import sys

    from msad.errors import MissingDependencyError

    monkeypatch.setitem(sys.modules, "faster_coco_eval", None)  # import fails as if not installed
    with pytest.raises(MissingDependencyError, match=r"^[^\n]*pip install 'msad\[fast-eval\]'[^\n]*$"):
        CocoEvaluator(h.make_coco(), h.CATEGORY_IDS, backend="faster_coco_eval")
    with pytest.raises(ValueError, match="backend must be one of"):
        CocoEvaluator(h.make_coco(), h.CATEGORY_IDS, backend="detectron2")
    CocoEvaluator(h.make_coco(), h.CATEGORY_IDS)  # the default needs nothing more
