"""Back-end choice (GPU chain, OpenVINO, onnxruntime; int8 or FP32), forcing one, and falling back."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest

from services.edge_infer.backend_choice import BackendChoice, CpuFeatures, MachineOffer, choose_backend, split_requests
from services.edge_infer.detector_pool import open_pool
from tests.fixtures.servers import TEST_DATA
from vision.detectors.openvino_session import OpenVinoTarget, openvino_available
from vision.providers import CPU, CUDA, TENSORRT

MODELS = Path(__file__).resolve().parents[1] / "models"
NANODET = MODELS / "nanodet.onnx"
VNNI = CpuFeatures.from_flags(["avx2", "avx512f", "avx512_vnni"])
NO_VNNI = CpuFeatures.from_flags(["avx2"])


def offer(providers=(CPU,), openvino=True, cpu=VNNI, cores=2) -> MachineOffer:
    return MachineOffer(tuple(providers), openvino, cpu, cores)


def test_gpu_chain_comes_first_when_onnxruntime_offers_it() -> None:
    choice = choose_backend(NANODET, offer=offer((TENSORRT, CUDA, CPU)))
    assert (choice.backend, choice.precision, choice.model_path) == ("tensorrt", "fp16", NANODET)
    assert choice.target.names == [TENSORRT, CUDA, CPU]
    cuda = choose_backend(NANODET, offer=offer((CUDA, CPU)))
    assert (cuda.backend, cuda.precision, cuda.target.names) == ("cuda", "fp32", [CUDA, CPU])


def test_cpu_with_vnni_and_openvino_runs_the_int8_model_on_openvino_and_says_why() -> None:
    choice = choose_backend(NANODET, offer=offer())
    assert (choice.backend, choice.precision, choice.model_path.name) == ("openvino", "int8", "nanodet-int8.onnx")
    assert isinstance(choice.target, OpenVinoTarget) and choice.target.performance_hint == "THROUGHPUT"
    assert choice.requests_in_flight == 2
    text = choice.describe()
    assert "no GPU provider" in text and "avx512_vnni" in text and "OpenVINO" in text


@pytest.mark.parametrize(
    ("machine", "expected"),
    [
        (offer(cpu=NO_VNNI), ("openvino", "fp32", "nanodet.onnx")),
        (offer(openvino=False), ("onnxruntime", "int8", "nanodet-int8.onnx")),
        (offer(openvino=False, cpu=NO_VNNI), ("onnxruntime", "fp32", "nanodet.onnx")),
    ],
)
def test_cpu_falls_back_to_what_this_machine_has(machine: MachineOffer, expected: tuple[str, str, str]) -> None:
    choice = choose_backend(NANODET, offer=machine)
    assert (choice.backend, choice.precision, choice.model_path.name) == expected


def test_settings_force_a_backend_and_precision() -> None:
    forced = choose_backend(NANODET, "onnxruntime", "fp32", offer=offer((CUDA, CPU)))
    assert (forced.backend, forced.precision, forced.model_path.name) == ("onnxruntime", "fp32", "nanodet.onnx")
    assert forced.target.names == [CPU] and forced.threads_per_request == 1
    ov_bf16 = choose_backend(NANODET, "openvino", "bf16", offer=offer())
    assert ov_bf16.target.precision_hint == "bf16" and ov_bf16.model_path.name == "nanodet.onnx"
    named = choose_backend(MODELS / "nanodet-int8.onnx", "onnxruntime", offer=offer(cpu=NO_VNNI))
    assert named.precision == "int8"


@pytest.mark.parametrize(
    ("backend", "precision", "machine", "message"),
    [
        ("openvino", "auto", offer(openvino=False), "openvino` package is not installed"),
        ("tensorrt", "auto", offer((CUDA, CPU)), "tensorrt was asked for"),
        ("cuda", "auto", offer(), "cuda was asked for"),
        ("onnxruntime", "bf16", offer(), "bf16 needs the openvino"),
        ("cuda", "int8", offer((CUDA, CPU)), "CPU back-ends only"),
        ("tpu", "auto", offer(), "Unknown edge back-end"),
        ("auto", "int4", offer(), "Unknown edge precision"),
    ],
)
def test_a_choice_this_machine_cannot_run_is_one_clear_error(backend, precision, machine, message) -> None:
    with pytest.raises(ValueError, match=message):
        choose_backend(NANODET, backend, precision, offer=machine)


def test_forced_int8_without_an_int8_model_names_the_build_script(tmp_path: Path) -> None:
    model = tmp_path / "nanodet.onnx"
    model.write_bytes(NANODET.read_bytes())
    with pytest.raises(ValueError, match="quantize_detector.py"):
        choose_backend(model, "onnxruntime", "int8", offer=offer())
    assert choose_backend(model, offer=offer()).precision == "fp32"


def test_requests_in_flight_split_the_cores() -> None:
    assert split_requests(2, 0) == (2, 1)
    assert split_requests(16, 0) == (4, 4)
    assert split_requests(1, 0) == (1, 1)
    assert split_requests(8, 2) == (2, 4)


def test_cpu_features_read_the_int8_instructions() -> None:
    assert VNNI.int8_dot_product == "avx512_vnni" and not NO_VNNI.int8_dot_product
    assert CpuFeatures.from_flags(["avx_vnni"]).int8_dot_product == "avx_vnni"
    assert CpuFeatures.from_flags(["avx512_bf16"]).bf16


def test_the_automatic_choice_detects_people_with_requests_in_flight() -> None:
    choice = choose_backend(NANODET)
    pool = open_pool(choice, score_threshold=0.35)
    try:
        frames = [cv2.imread(str(TEST_DATA / name)) for name in ("person.jpg", "kite.jpg", "person.jpg", "dog.jpg")]
        together = pool.detect_all(frames)
        one_by_one = [pool.first.detect(frame) for frame in frames]
        assert [len(d) for d in together] == [len(d) for d in one_by_one]
        assert 0 in together[0].class_ids.tolist()
    finally:
        pool.close()


@pytest.mark.skipif(not openvino_available(), reason="openvino not installed")
def test_an_openvino_failure_falls_back_to_onnxruntime() -> None:
    choice = choose_backend(NANODET, "openvino", "fp32", offer=offer(cores=1))
    broken = BackendChoice(choice.backend, choice.precision, choice.model_path,
                           OpenVinoTarget(device="NO_SUCH_DEVICE"), 1, 0, choice.reason)
    pool = open_pool(broken, score_threshold=0.35)
    try:
        assert pool.choice is not None and pool.choice.backend == "onnxruntime"
        assert "OpenVINO failed" in pool.choice.reason
        assert pool.first.providers == [CPU]
        assert 0 in pool.first.detect(cv2.imread(str(TEST_DATA / "person.jpg"))).class_ids.tolist()
    finally:
        pool.close()


@pytest.mark.skipif(not openvino_available(), reason="openvino not installed")
def test_openvino_reads_the_fp32_model_after_constant_folding(tmp_path: Path) -> None:
    from vision.detectors.registry import load_detector

    target = OpenVinoTarget(cache_dir=tmp_path)
    detector = load_detector("nanodet", target)
    assert detector.providers == ["OpenVINOCPU"]
    assert list(tmp_path.glob("nanodet-folded-*.onnx"))
    found = detector.detect(cv2.imread(str(TEST_DATA / "person.jpg")))
    reference = load_detector("nanodet").detect(cv2.imread(str(TEST_DATA / "person.jpg")))
    assert sorted(found.class_ids.tolist()) == sorted(reference.class_ids.tolist())


def test_the_detector_pool_starts_all_its_threads_before_any_inference() -> None:
    import threading

    from services.edge_infer.detector_pool import DetectorPool

    class Idle:
        name, labels, providers = "idle", ["person"], ["CPUExecutionProvider"]

    before = {t.name for t in threading.enumerate()}
    pool = DetectorPool([Idle(), Idle(), Idle()])  # type: ignore[list-item]
    try:
        started = {t.name for t in threading.enumerate()} - before
        assert len([name for name in started if name.startswith("detector")]) == 3
    finally:
        pool.close()
