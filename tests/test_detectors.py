"""Detector layer: real models on real photos, generated YOLO-format models, and clear errors for bad input."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.fixtures.detector_models import CENTERNET_PATH, NANODET_PATH, TEST_IMAGES
from vision.detectors import COCO_LABELS, Detections, Detector, InvalidFrameError, ModelLoadError, load_detector
from vision.detectors.centernet import CenterNetDetector
from vision.detectors.nanodet import NanoDetDetector
from vision.detectors.nms import box_iou
from vision.detectors.tiled import TiledDetector, make_tiles
from vision.detectors.yolo import YoloDetector
from vision.providers import CPU, CUDA, TENSORRT, choose_providers

PERSON = COCO_LABELS.index("person")
# Hand-checked person boxes (x1, y1, x2, y2 in frame pixels): measured once with NanoDet and CenterNet,
# drawn over the photos and eyeballed (hat to boots for the man in person.jpg, the whole astronaut
# down to the bottom edge in astronaut.png), then rounded.
PERSON_BOXES = {
    "person.jpg": np.array([189, 102, 276, 379], np.float32),
    "astronaut.png": np.array([12, 12, 366, 510], np.float32),
}


def read_image(name: str) -> np.ndarray:
    image = cv2.imread(str(TEST_IMAGES / name))
    assert image is not None, name
    return image


@pytest.fixture(scope="module")
def nanodet() -> Detector:
    return load_detector("nanodet", intra_op_num_threads=2)


@pytest.fixture(scope="module")
def centernet() -> Detector:
    return load_detector(CENTERNET_PATH, intra_op_num_threads=2)


@pytest.fixture(scope="module")
def tiled() -> Detector:
    return load_detector("tiled", intra_op_num_threads=2)


@pytest.fixture(scope="module")
def yolo(yolo_from_nanodet_path: Path) -> Detector:
    return load_detector(yolo_from_nanodet_path, intra_op_num_threads=2)


@pytest.fixture(scope="module")
def yolo_transposed(yolo_transposed_from_nanodet_path: Path) -> Detector:
    return load_detector(yolo_transposed_from_nanodet_path, intra_op_num_threads=2)


def best_person_iou(found: Detections, reference: np.ndarray) -> float:
    people = found.of_class(PERSON)
    return float(box_iou(reference, people.boxes).max()) if len(people) else 0.0


def assert_well_formed(found: Detections, image: np.ndarray) -> None:
    height, width = image.shape[:2]
    assert found.boxes.dtype == np.float32 and found.boxes.shape == (len(found), 4)
    assert found.scores.dtype == np.float32 and found.class_ids.dtype == np.int32
    assert np.all(found.boxes[:, 2] > found.boxes[:, 0]) and np.all(found.boxes[:, 3] > found.boxes[:, 1])
    assert found.boxes[:, 0::2].min(initial=0) >= 0 and found.boxes[:, 0::2].max(initial=0) <= width
    assert found.boxes[:, 1::2].min(initial=0) >= 0 and found.boxes[:, 1::2].max(initial=0) <= height
    assert np.all(np.diff(found.scores) <= 0), "detections come best first"
    assert np.all((found.class_ids >= 0) & (found.class_ids < len(COCO_LABELS)))


@pytest.mark.parametrize("detector_name", ["nanodet", "yolo", "yolo_transposed", "centernet", "tiled"])
@pytest.mark.parametrize("image_name", sorted(PERSON_BOXES))
def test_every_detector_finds_the_person(
    request: pytest.FixtureRequest, detector_name: str, image_name: str
) -> None:
    detector: Detector = request.getfixturevalue(detector_name)
    image = read_image(image_name)
    found = detector.detect(image)
    assert_well_formed(found, image)
    assert best_person_iou(found, PERSON_BOXES[image_name]) >= 0.5, found.labels()


def test_registry_picks_the_decoder_from_the_model_shapes(
    nanodet: Detector, centernet: Detector, tiled: Detector, yolo: Detector, yolo_transposed: Detector
) -> None:
    assert isinstance(nanodet, NanoDetDetector) and nanodet.input_size == (416, 416)
    assert isinstance(centernet, CenterNetDetector) and centernet.input_size == (512, 512)
    assert isinstance(yolo, YoloDetector) and yolo.layout.features_first
    assert isinstance(yolo_transposed, YoloDetector) and not yolo_transposed.layout.features_first
    assert yolo.layout.num_classes == 80 and yolo.input_size == (416, 416)
    assert isinstance(tiled, TiledDetector)
    assert nanodet.name == "nanodet" and centernet.name == "centernet"
    assert "CPUExecutionProvider" in nanodet.providers


def test_nanodet_scenes_match_what_the_model_is_known_to_see(nanodet: Detector) -> None:
    person_scene = set(nanodet.detect(read_image("person.jpg")).labels())
    assert {"person", "dog"} <= person_scene and person_scene & {"horse", "cow"}
    street = set(nanodet.detect(read_image("dog.jpg")).labels())
    assert {"bicycle", "dog"} <= street and street & {"car", "truck"}
    kites = nanodet.detect(read_image("kite.jpg"))
    assert kites.labels().count("person") >= 5 and "kite" in kites.labels()
    # This NanoDet calls the horses in horses.jpg partly "cow"; either way it finds large animals.
    assert len(nanodet.detect(read_image("horses.jpg")).of_class(COCO_LABELS.index("cow"))) >= 1


def test_yolo_layouts_agree_and_match_nanodet_on_a_square_frame(
    nanodet: Detector, yolo: Detector, yolo_transposed: Detector
) -> None:
    image = read_image("astronaut.png")  # square: letterbox and stretch give the same 416x416 input
    direct, features_first, transposed = nanodet.detect(image), yolo.detect(image), yolo_transposed.detect(image)
    np.testing.assert_allclose(features_first.boxes, transposed.boxes, atol=1e-3)
    np.testing.assert_array_equal(features_first.class_ids, transposed.class_ids)
    assert len(direct) == len(features_first)
    np.testing.assert_allclose(features_first.boxes, direct.boxes, atol=2.0)
    np.testing.assert_allclose(features_first.scores, direct.scores, atol=0.02)


@pytest.mark.parametrize("detector_name", ["nanodet", "yolo", "centernet"])
def test_boxes_follow_the_frame_when_it_is_upscaled(request: pytest.FixtureRequest, detector_name: str) -> None:
    detector: Detector = request.getfixturevalue(detector_name)
    image = read_image("person.jpg")
    doubled = cv2.resize(image, (image.shape[1] * 2, image.shape[0] * 2), interpolation=cv2.INTER_LINEAR)
    detector.detect(image)  # frame size changes between calls, as when a camera is reconfigured
    assert best_person_iou(detector.detect(doubled), PERSON_BOXES["person.jpg"] * 2) >= 0.5


def test_cloud_tier_finds_more_small_people_than_the_edge_model(nanodet: Detector, tiled: Detector) -> None:
    image = read_image("kite.jpg")
    edge_people = len(nanodet.detect(image).of_class(PERSON))
    cloud = tiled.detect(image)
    assert_well_formed(cloud, image)
    assert len(cloud.of_class(PERSON)) >= edge_people + 2


def test_centernet_sees_the_small_people_in_kite(centernet: Detector) -> None:
    assert len(centernet.detect(read_image("kite.jpg")).of_class(PERSON)) >= 8


def test_tiles_cover_the_frame_with_overlap() -> None:
    tiles = make_tiles(1920, 1080, columns=2, rows=2, overlap=0.25)
    assert len(tiles) == 4
    assert min(tile.x0 for tile in tiles) == 0 and max(tile.x1 for tile in tiles) == 1920
    assert min(tile.y0 for tile in tiles) == 0 and max(tile.y1 for tile in tiles) == 1080
    left, right = tiles[0], tiles[1]
    assert left.x1 - right.x0 >= 0.25 * (left.x1 - left.x0) - 1


def test_last_timing_splits_each_frame_into_stages(nanodet: Detector, tiled: Detector) -> None:
    image = read_image("dog.jpg")
    for detector in (nanodet, tiled):
        detector.detect(image)
        timing = detector.last_timing
        assert timing.pre_ms > 0 and timing.infer_ms > 0 and timing.post_ms > 0
        assert timing.total_ms == pytest.approx(timing.pre_ms + timing.infer_ms + timing.post_ms)


def test_a_frame_without_objects_gives_empty_detections(nanodet: Detector, yolo: Detector) -> None:
    black = np.zeros((720, 1280, 3), np.uint8)
    for detector in (nanodet, yolo):
        found = detector.detect(black)
        assert len(found) == 0 and found.boxes.shape == (0, 4)


@pytest.mark.parametrize(
    ("frame", "problem"),
    [
        (np.zeros((480, 640), np.uint8), "shaped (height, width, 3)"),
        (np.zeros((480, 640, 4), np.uint8), "shaped (height, width, 3)"),
        (np.zeros((0, 640, 3), np.uint8), "empty"),
        (np.zeros((480, 640, 3), np.float32), "uint8"),
        ([[0, 0, 0]], "numpy array"),
    ],
    ids=["grayscale", "four-channel", "zero-size", "float", "not-an-array"],
)
@pytest.mark.parametrize("detector_name", ["nanodet", "centernet", "tiled"])
def test_bad_frames_raise_one_clear_value_error(
    request: pytest.FixtureRequest, detector_name: str, frame: object, problem: str
) -> None:
    detector: Detector = request.getfixturevalue(detector_name)
    with pytest.raises(ValueError, match="Frame") as raised:
        detector.detect(frame)  # type: ignore[arg-type]
    assert isinstance(raised.value, InvalidFrameError)
    assert problem in str(raised.value) and "\n" not in str(raised.value)


def test_missing_model_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.onnx"
    with pytest.raises(ModelLoadError, match="does not exist") as raised:
        load_detector(missing)
    assert str(missing) in str(raised.value)


def test_unknown_model_name_is_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"yolov99\.onnx does not exist"):
        load_detector("yolov99", models_dir=tmp_path)


def test_corrupt_model_file_is_not_onnx(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(np.random.default_rng(7).bytes(4096))
    with pytest.raises(ModelLoadError, match="is not a loadable ONNX model") as raised:
        load_detector(corrupt)
    assert "\n" not in str(raised.value)


def test_unknown_output_layout_lists_what_is_supported(unknown_layout_model_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="match no supported layout") as raised:
        load_detector(unknown_layout_model_path)
    message = str(raised.value)
    assert "feature_map [1, 3, 8, 8]" in message and "YOLOv8-11" in message and "\n" not in message


def test_nms_included_yolo_export_is_refused_not_misread(end2end_yolo_model_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"output0 \[1, 300, 6\].*match no supported layout"):
        load_detector(end2end_yolo_model_path)


def test_unknown_option_is_refused() -> None:
    with pytest.raises(ValueError, match="Unknown detector option"):
        load_detector(NANODET_PATH, score_treshold=0.5)
    with pytest.raises(ValueError, match="Unknown detector option"):
        load_detector("tiled", tile_size=640)


def test_providers_prefer_tensorrt_then_cuda_then_cpu(tmp_path: Path) -> None:
    choice = choose_providers(available=[CPU, CUDA, TENSORRT], engine_cache_dir=tmp_path / "trt")
    assert choice.names == [TENSORRT, CUDA, CPU]
    trt_options = choice.providers[0][1]  # type: ignore[index]
    assert trt_options["trt_fp16_enable"] is True
    assert trt_options["trt_engine_cache_enable"] is True
    assert trt_options["trt_engine_cache_path"] == str(tmp_path / "trt")
    assert "TensorRT (FP16" in choice.description


def test_providers_fall_back_to_cpu_and_say_why() -> None:
    choice = choose_providers(available=[CPU])
    assert choice.names == [CPU]
    assert "TensorrtExecutionProvider" in choice.description and "CUDAExecutionProvider" in choice.description
    assert choose_providers(allowed=[CPU], available=[CPU, CUDA]).names == [CPU]
    with pytest.raises(ValueError, match="Unknown execution provider"):
        choose_providers(allowed=["MagicExecutionProvider"])
