"""The classify stage (--classify-crops): crop regions, labels equal to the classifier's own
prediction on each crop, batching across detections and frames, refusals."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from pipeline.loader import load_model  # noqa: E402
from pipeline.paths import Item  # noqa: E402
from pipeline.runtime.classify import CropClassifier  # noqa: E402
from pipeline.sources import SyntheticScene  # noqa: E402
from pipeline.types import Detections, Frame  # noqa: E402
from tests.models.test_classify import spread  # noqa: E402


@pytest.mark.parametrize("xyxy, region", [
    ((10.2, 20.7, 30.1, 40.0), (10, 20, 31, 40)),  # rounded outwards
    ((-5, -3, 8, 9), (0, 0, 8, 9)),  # clipped to the frame
    ((99.5, 59.5, 99.6, 59.6), (99, 59, 100, 60)),  # at least one pixel, inside the frame
    ((50, 30, 50, 30), (50, 30, 51, 31)),  # a zero-size box: one pixel
    ((120, 70, 130, 80), (99, 59, 100, 60)),  # outside: the nearest pixel
])
def test_crop_regions(xyxy, region):
    assert tuple(CropClassifier.regions(np.array([xyxy], np.float32), (60, 100))[0]) == region


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    net = __import__("pipeline.models.classify", fromlist=["build"]).build("resnet18")
    spread(net, 1.0, SyntheticScene(320, 240, 1).render(0), "resnet18")
    path = tmp_path_factory.mktemp("cls") / "w.pth"
    torch.save(net.state_dict(), path)
    return load_model("torchvision:resnet18", weights=path)


def test_each_detection_gets_the_classifiers_label_of_its_crop(classifier):
    """Two frames (one with no detections) in one call, batched 3 crops at a time: every label is
    what the classifier predicts for that crop alone."""
    stage = CropClassifier(classifier, batch=3)
    frames = [SyntheticScene(320, 240, s).render(2) for s in (1, 2, 3)]
    boxes = [np.array([[10, 10, 120, 90], [100, 50, 300, 230], [0, 0, 40, 239], [200.4, 10.6, 260.2, 70.9]], np.float32),
             np.zeros((0, 4), np.float32), np.array([[30, 40, 90, 200]], np.float32)]
    items = [Item(Frame(f, i, 0.0, 0.0), detections=Detections(b, np.full(len(b), 0.9), np.zeros(len(b))))
             for i, (f, b) in enumerate(zip(frames, boxes))]
    stage.apply(items)
    for it, b in zip(items, boxes):
        labels = it.detections.crop_labels
        assert len(labels) == len(b) and labels.names == classifier.info.names
        for k, (x1, y1, x2, y2) in enumerate(CropClassifier.regions(b, (240, 320))):
            alone = classifier.predict(it.frame.image[y1:y2, x1:x2])[0].labels
            assert labels.class_id[k] == alone.class_id[0]
            assert labels.confidence[k] == pytest.approx(alone.confidence[0], rel=1e-4)
    assert len({int(c) for it in items for c in it.detections.crop_labels.class_id}) >= 2, "labels should differ between crops"
    kept = items[0].detections[np.array([False, True, False, True])]  # selecting detections keeps their labels
    np.testing.assert_array_equal(kept.crop_labels.class_id, items[0].detections.crop_labels.class_id[[1, 3]])


def test_only_a_classifier_is_taken(tiny_model):
    with pytest.raises(ValueError, match="needs a classification model"):
        CropClassifier(tiny_model)
