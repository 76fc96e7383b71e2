"""Metrics against a hand-computed example, and the evaluate path end to end."""

from __future__ import annotations

import numpy as np
import pytest

from cifarzoo.engines.evaluate import compute_report, evaluate_arrays, expected_calibration_error


def _logits_for(predictions: list[int], num_classes: int, confidence: float = 4.0) -> np.ndarray:
    logits = np.zeros((len(predictions), num_classes))
    logits[np.arange(len(predictions)), predictions] = confidence
    return logits


def test_hand_computed_confusion_and_per_class_metrics() -> None:
    # true:  a a a b b c   -> predicted: a a b b c c
    labels = np.array([0, 0, 0, 1, 1, 2])
    report = compute_report(_logits_for([0, 0, 1, 1, 2, 2], 3), labels, ("a", "b", "c"))
    assert report.confusion == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert report.n == 6 and report.top1 == pytest.approx(100 * 4 / 6)
    a, b, c = (report.per_class[k] for k in "abc")
    assert (a.precision, a.recall, a.support) == (1.0, pytest.approx(2 / 3), 3)
    assert (b.precision, b.recall) == (0.5, 0.5)
    assert (c.precision, c.recall, c.f1) == (0.5, 1.0, pytest.approx(2 / 3))
    assert report.top5 == 100.0  # three classes: the label is always in the top 5
    # Every prediction has probability e^4 / (e^4 + 2): loss is known in closed form for right and wrong.
    p_top = np.exp(4) / (np.exp(4) + 2)
    expected_loss = (4 * -np.log(p_top) + 2 * -np.log(1 / (np.exp(4) + 2))) / 6
    assert report.loss == pytest.approx(expected_loss)
    assert report.ece == pytest.approx(abs(4 / 6 - p_top))  # one confidence bin holds everything


def test_top5_and_empty_classes() -> None:
    labels = np.array([9, 9])
    logits = np.tile(np.arange(10, dtype=float), (2, 1))  # class 9 scores highest, class 0 lowest
    logits[1] = logits[1][::-1]  # second row: class 9 now lowest
    report = compute_report(logits, labels, [str(i) for i in range(10)])
    assert report.top1 == 50.0 and report.top5 == 50.0
    assert report.per_class["0"].support == 0 and report.per_class["0"].precision == 0.0


def test_ece_is_zero_when_calibrated() -> None:
    confidence = np.array([0.8] * 10)
    correct = np.array([True] * 8 + [False] * 2)
    assert expected_calibration_error(confidence, correct) == pytest.approx(0.0)


def test_evaluate_arrays_with_flip_tta() -> None:
    from cifarzoo.data.specs import FASHION_MNIST

    cfg = FASHION_MNIST.preprocess_config()
    images = np.zeros((4, 28, 28, 1), np.uint8)
    images[:, :, :14] = 255  # bright left half
    calls = []

    def left_minus_right(x: np.ndarray) -> np.ndarray:  # a "model" that says class 1 when the left is brighter
        calls.append(x.shape)
        diff = x[:, 0, :, :14].mean((1, 2)) - x[:, 0, :, 14:].mean((1, 2))
        return np.stack([-diff, diff], axis=1)

    report = evaluate_arrays(left_minus_right, cfg, images, np.ones(4, int), ("no", "yes"), batch_size=3)
    assert report.top1 == 100.0 and calls == [(3, 1, 28, 28), (1, 1, 28, 28)]
    flipped = evaluate_arrays(left_minus_right, cfg, images, np.ones(4, int), ("no", "yes"), tta="flip")
    assert flipped.loss == pytest.approx(np.log(2))  # image and mirror cancel exactly
    with pytest.raises(ValueError, match="28, 28, 1"):
        evaluate_arrays(left_minus_right, cfg, np.zeros((1, 32, 32, 1), np.uint8), np.ones(1, int), ("no", "yes"))


def test_reliability_bins_and_predictions_on_the_hand_computed_example() -> None:
    labels = np.array([0, 0, 0, 1, 1, 2])
    report = compute_report(_logits_for([0, 0, 1, 1, 2, 2], 3), labels, ("a", "b", "c"))
    p_top = np.exp(4) / (np.exp(4) + 2)  # ~0.965: every prediction lands in the last of 15 bins
    filled = [b for b in report.reliability if b["count"]]
    assert len(report.reliability) == 15 and len(filled) == 1 and filled[0]["lower"] == pytest.approx(14 / 15)
    assert filled[0]["count"] == 6 and filled[0]["accuracy"] == pytest.approx(4 / 6)
    assert filled[0]["confidence"] == pytest.approx(p_top)
    assert report.pred.tolist() == [0, 0, 1, 1, 2, 2] and report.confidence == pytest.approx([p_top] * 6)
    assert report.predicted_counts() == {"a": 2, "b": 2, "c": 2}
    report.ids = [str(i) for i in range(6)]
    assert report.predictions()[2] == {"id": "2", "label": "b", "prob": pytest.approx(p_top), "true": "a"}


def test_unlabeled_report_is_strict_json() -> None:
    import json

    from cifarzoo.engines.evaluate import predictions_report

    report = predictions_report(_logits_for([1, 1, 0], 2), ("x", "y"))
    data = report.to_dict(include_predictions=True)
    json.dumps(data, allow_nan=False)  # NaN metrics become null
    assert data["labeled"] is False and data["n"] == 3 and data["top1"] is None and data["ece"] is None
    assert data["predicted_counts"] == {"x": 1, "y": 2} and "true" not in data["predictions"][0]
