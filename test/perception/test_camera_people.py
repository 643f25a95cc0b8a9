"""The camera people detector on real images: the SSD finds pedestrians HOG missed, fusion adds no false claims."""

from __future__ import annotations

import io
import tarfile

import numpy as np
import pytest
from testdata import DATASETS

from physical_ai.bringup.stack import node_params, source_root
from physical_ai.perception.camera import PersonDetector
from physical_ai.perception.datasets import load_nuscenes
from physical_ai.perception.evaluation import camera_people_score, evaluate, image_boxes
from physical_ai.perception.params import pipeline_config
from physical_ai.perception.ssd_detector import SsdPersonDetector, find_weights, install_weights, nms, ssd_anchors

NUSCENES = DATASETS / "nuscenes_sample"


def test_anchors_match_the_models_outputs():
    anchors = ssd_anchors()
    assert anchors.shape == (1917, 4)                 # 19x19x3 + (10x10 + 5x5 + 3x3 + 2x2 + 1x1) x 6
    assert np.all((anchors[:, :2] > 0) & (anchors[:, :2] < 1))
    np.testing.assert_allclose(anchors[:3, 2:], [[0.1, 0.1], [0.2 * 2**0.5, 0.2 / 2**0.5],
                                                 [0.2 / 2**0.5, 0.2 * 2**0.5]])
    np.testing.assert_allclose(anchors[-1], [0.5, 0.5, np.sqrt(0.95), np.sqrt(0.95)])


def test_nms_keeps_the_best_of_overlapping_boxes():
    boxes = np.array([[0, 0, 10, 10, 0.5], [1, 1, 11, 11, 0.9], [20, 20, 30, 30, 0.4]])
    assert list(nms(boxes, 0.4)) == [1, 2]


def test_weights_from_a_tarball_that_fails_its_integrity_check_are_refused(tmp_path):
    fake = tmp_path / "objectron.tgz"
    with tarfile.open(fake, "w:gz") as tar:
        data = b"not the package"
        info = tarfile.TarInfo("package/objectron_solution_packed_assets.data")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(RuntimeError, match="integrity"):
        install_weights(tmp_path / "out", url=fake.as_uri())
    assert not (tmp_path / "out").exists()


def test_without_weights_the_detector_says_why_and_finds_nothing(tmp_path):
    det = SsdPersonDetector(model_path=tmp_path / "missing.tflite")
    assert not det.available and "install-detector" in det.unavailable_reason
    assert det.detect(np.zeros((480, 640, 3), np.uint8)).shape == (0, 5)


@pytest.mark.skipif(not NUSCENES.exists(), reason=f"nuScenes sample not found at {NUSCENES}")
def test_the_ssd_finds_the_pedestrians_in_real_images_that_hog_misses():
    """Six nuScenes cameras, 11 labelled pedestrians within 40 m in view: HOG found none (issue 21)."""
    assert find_weights() is not None, "SSD weights missing: run `physai perception install-detector`"
    rec = load_nuscenes(NUSCENES)
    ssd = camera_people_score(rec, SsdPersonDetector(tile_px=450).detect)
    hog = PersonDetector(frame_scale=0.5)
    assert ssd["labelled"] == 11
    assert ssd["found"] >= 7 and ssd["false"] <= 8
    if hog.available:
        assert camera_people_score(rec, hog.detect)["found"] < ssd["found"]


@pytest.mark.skipif(not NUSCENES.exists(), reason=f"nuScenes sample not found at {NUSCENES}")
def test_fused_cameras_keep_the_claims_right():
    """With the vehicle's cameras fused, recall and claims hold: a camera box on a pedestrian the LiDAR saw (or on
    a bag on a barrier) made a second, misplaced "person" before (9 claims on unannotated structure)."""
    rec = load_nuscenes(NUSCENES)
    params = node_params(source_root() / "config" / "vehicle.yaml", "perception_fusion")
    assert params["people_detector"] == "ssd"
    score, _ = evaluate(rec, pipeline_config(params), repeats=1, cameras=True)
    fused = score.fused
    assert fused["recall_1m"] >= 0.9 and fused["false_person_vehicle"] <= 3
    right, claims = fused["claims"]["person"]
    assert right >= score.claims["person"][0] and right / claims >= 0.75
    assert score.camera_people["found"] >= 7


@pytest.mark.skipif(not NUSCENES.exists(), reason=f"nuScenes sample not found at {NUSCENES}")
def test_dataset_anonymisation_masks_the_pedestrians_of_real_images():
    """`physai dataset build`'s image detector (anonymise.detector: ssd) on the six nuScenes images: most pixels of
    the 11 labelled pedestrians' boxes are masked; HOG masked none."""
    from physical_ai.data.anonymise import detector_mask
    from physical_ai.data.mapping import AnonymiseConfig

    assert AnonymiseConfig().detector == "ssd"
    rec = load_nuscenes(NUSCENES)
    covered, others = [], []
    for name, image in rec.images.items():
        T_cam_base = rec.T_cam_lidar[name] @ np.linalg.inv(rec.T_base_lidar)
        boxes = image_boxes([b for b in rec.boxes if b.label == "pedestrian" and np.hypot(*b.center[:2]) <= 40],
                             rec.K[name], T_cam_base, image.shape[1], image.shape[0]).astype(int)
        mask, truth = np.zeros(image.shape[:2], np.uint8), np.zeros(image.shape[:2], bool)
        detector_mask(image, SsdPersonDetector(tile_px=450), mask)
        for x0, y0, x1, y1 in boxes:
            covered.append(mask[y0:y1, x0:x1].mean())
            truth[y0:y1, x0:x1] = True
        others.append(mask[~truth].mean())
    assert len(covered) == 11 and np.mean(covered) >= 0.7 and sum(c >= 0.9 for c in covered) >= 5
    assert np.mean(others) < 0.02          # the rest of the image stays readable
