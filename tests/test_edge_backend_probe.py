"""The measured `auto` back-end: the choice follows measured speeds, within the recall floor, cached per
machine and model and measured again when either changes; and one real probe on this machine."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import pytest

from services.edge_infer import backend_probe
from services.edge_infer.backend_choice import CpuFeatures, MachineOffer
from services.edge_infer.backend_probe import Candidate, Measurement, ProbeCache, ProbeResult, candidates, fingerprint, measured_choice
from vision.detectors.openvino_session import OpenVinoTarget, openvino_available
from vision.providers import CPU

MODELS = Path(__file__).resolve().parents[1] / "models"
NO_VNNI = CpuFeatures.from_flags(["avx2"])  # the fixed rule would pick OpenVINO FP32 here


def offer(openvino: bool = True, cores: int = 2) -> MachineOffer:
    return MachineOffer((CPU,), openvino, NO_VNNI, cores)


@pytest.fixture()
def model(tmp_path: Path) -> Path:
    """A copy of NanoDet and its int8 sibling, so a test may change the model file."""
    folder = tmp_path / "models"
    folder.mkdir()
    for name in ("nanodet.onnx", "nanodet-int8.onnx"):
        shutil.copy(MODELS / name, folder / name)
    return folder / "nanodet.onnx"


class FakeProbe:
    """Stands in for the timed probe: given speeds and recalls per candidate label; counts its calls."""

    def __init__(self, speeds: dict[str, float], recalls: dict[str, float] | None = None) -> None:
        self.speeds, self.recalls, self.calls = speeds, recalls or {}, 0

    def __call__(self, model_path: Path, machine: MachineOffer, wanted: Sequence[Candidate], slice_s: float) -> ProbeResult:
        self.calls += 1
        return ProbeResult(fingerprint(model_path, machine),
                           tuple(Measurement(c, self.speeds.get(c.label, 1.0), self.recalls.get(c.label, 1.0)) for c in wanted),
                           0.1)


SPEEDS = {"onnxruntime fp32 x1": 10.0, "onnxruntime fp32 x2": 12.0, "onnxruntime int8 x1": 15.0,
          "onnxruntime int8 x2": 18.4, "openvino fp32 x1": 11.1, "openvino fp32 x2": 11.5,
          "openvino int8 x1": 16.4, "openvino int8 x2": 16.0}


def test_candidates_cover_backends_precisions_and_requests_reference_first(model: Path) -> None:
    labels = [c.label for c in candidates(offer(), model)]
    assert labels[0] == "onnxruntime fp32 x1" and sorted(labels) == sorted(SPEEDS)
    assert [c.label for c in candidates(offer(openvino=False, cores=1), model)] == ["onnxruntime fp32 x1", "onnxruntime int8 x1"]
    forced = candidates(offer(), model, backend="openvino", precision="int8")
    assert [c.label for c in forced] == ["openvino int8 x1", "openvino int8 x2"]
    (model.parent / "nanodet-int8.onnx").unlink()
    assert {c.precision for c in candidates(offer(), model)} == {"fp32"}


def test_the_choice_follows_the_measured_speeds(model: Path, tmp_path: Path) -> None:
    choice = measured_choice(model, offer=offer(), cache_dir=tmp_path / "cache", measure_with=FakeProbe(SPEEDS))
    assert (choice.backend, choice.precision, choice.requests_in_flight) == ("onnxruntime", "int8", 2)
    assert choice.model_path.name == "nanodet-int8.onnx" and choice.threads_per_request == 1
    assert "fastest measured" in choice.describe() and "18.4" in choice.describe()

    faster_openvino = {**SPEEDS, "openvino fp32 x1": 30.0}
    choice = measured_choice(model, offer=offer(), cache_dir=tmp_path / "other", measure_with=FakeProbe(faster_openvino))
    assert (choice.backend, choice.precision, choice.requests_in_flight) == ("openvino", "fp32", 1)
    assert isinstance(choice.target, OpenVinoTarget) and choice.target.precision_hint == "f32"


def test_a_candidate_below_the_recall_floor_is_never_chosen(model: Path, tmp_path: Path) -> None:
    poor_int8 = {"onnxruntime int8 x1": 0.90, "onnxruntime int8 x2": 0.90, "openvino int8 x1": 0.949, "openvino int8 x2": 0.96}
    choice = measured_choice(model, offer=offer(), cache_dir=tmp_path, measure_with=FakeProbe(SPEEDS, poor_int8))
    assert (choice.backend, choice.precision, choice.requests_in_flight) == ("openvino", "int8", 2)
    none_pass = {label: 0.5 for label in SPEEDS if "int8" in label}
    choice = measured_choice(model, offer=offer(), cache_dir=tmp_path / "b", measure_with=FakeProbe(SPEEDS, none_pass))
    assert (choice.backend, choice.precision, choice.requests_in_flight) == ("onnxruntime", "fp32", 2)


def test_figures_are_cached_and_measured_again_when_the_model_or_the_cpu_changes(
        model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    cache, probe = tmp_path / "cache", FakeProbe(SPEEDS)
    caplog.set_level("INFO", logger=backend_probe.__name__)
    measured_choice(model, offer=offer(), cache_dir=cache, measure_with=probe)
    assert probe.calls == 1 and ProbeCache(cache).path(model).is_file()
    again = measured_choice(model, offer=offer(), cache_dir=cache, measure_with=probe)
    assert probe.calls == 1 and "cached figures" in again.reason
    assert "onnxruntime int8 x2 18.4 calls/s = 1.84x" in caplog.text  # it logs what it measured

    (model.parent / "nanodet-int8.onnx").write_bytes((MODELS / "nanodet-int8.onnx").read_bytes() + b"\0")
    measured_choice(model, offer=offer(), cache_dir=cache, measure_with=probe)
    assert probe.calls == 2 and "model changed" in caplog.text

    monkeypatch.setattr(backend_probe, "_cpu_identity", lambda: ("Another CPU", "avx2 avx512_vnni"))
    measured_choice(model, offer=offer(), cache_dir=cache, measure_with=probe)
    assert probe.calls == 3 and "cpu, cpu_flags changed" in caplog.text
    measured_choice(model, offer=offer(cores=4), cache_dir=cache, measure_with=probe)
    assert probe.calls == 4 and "cores changed" in caplog.text

    ProbeCache(cache).path(model).write_text("{not json")
    measured_choice(model, offer=offer(cores=4), cache_dir=cache, measure_with=probe)
    assert probe.calls == 5 and "unreadable" in caplog.text


def test_no_probe_where_nothing_is_left_to_measure(model: Path, tmp_path: Path) -> None:
    probe = FakeProbe(SPEEDS)
    forced = measured_choice(model, "onnxruntime", "fp32", requests=1, offer=offer(), cache_dir=tmp_path, measure_with=probe)
    off = measured_choice(model, offer=offer(), probe_s=0, cache_dir=tmp_path, measure_with=probe)
    assert probe.calls == 0 and (forced.backend, forced.precision) == ("onnxruntime", "fp32")
    assert (off.backend, off.precision) == ("openvino", "fp32")  # the fixed rule


def test_a_real_probe_on_this_machine_times_each_candidate_and_checks_int8_recall(model: Path, tmp_path: Path) -> None:
    shutil.copytree(MODELS / "probe", model.parent / "probe")
    machine = MachineOffer.detect()
    wanted = [Candidate("onnxruntime", "fp32", 1), Candidate("onnxruntime", "int8", 1)]
    if openvino_available():
        wanted.append(Candidate("openvino", "int8", 1))
    result = backend_probe.measure(model, machine, wanted, slice_s=0.3, rounds=1, recall_frames=30)
    by_label = {m.candidate.label: m for m in result.measurements}
    assert all(m.calls_per_s > 0 and not m.problem for m in result.measurements), result.describe()
    assert by_label["onnxruntime fp32 x1"].recall == 1.0
    # models/README.md: 0.98 on these held-out clips; 30 frames hold about 30 people, so one or two may differ
    assert 0.9 <= by_label["onnxruntime int8 x1"].recall <= 1.0
    assert result.best().candidate in wanted
