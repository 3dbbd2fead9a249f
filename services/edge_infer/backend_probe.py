"""The automatic CPU back-end, measured: a short timed probe of the candidates on this machine, cached.

Rules of thumb (OpenVINO beats onnxruntime, int8 pays only with VNNI/AMX) guessed wrong on CPUs
where onnxruntime's int8 with several requests in flight was the fastest. So ``auto`` on the CPU
times every candidate (back-end x precision x requests in flight) the way the edge uses it (all
requests busy at once, interleaved rounds so a busy machine disturbs every candidate alike), drops a
candidate whose people fall below the recall floor against FP32's on real held-out footage
(models/probe/), and takes the fastest. The result is cached per machine (CPU model, flags,
cores, runtime versions) and model (content hash), and measured again when either changes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

from services.edge_infer.backend_choice import (
    AUTO,
    FP32,
    INT8,
    INT8_SUFFIX,
    ONNXRUNTIME_BACKEND,
    OPENVINO_BACKEND,
    BackendChoice,
    MachineOffer,
    choose_backend,
    int8_sibling,
)
from services.edge_infer.detector_agreement import NO_FRAMES, agreement, read_clip_frames
from services.edge_infer.detector_pool import DetectorPool, open_pool
from vision.detectors.base import Detector, ModelLoadError
from vision.detectors.onnx_detector import OnnxDetector

log = logging.getLogger(__name__)
RECALL_FLOOR = 0.95  # of FP32's people, the floor the int8 model was built to (models/README.md)
RECALL_FRAMES = 120  # about 110 people of FP32's: fewer make the 0.95 floor a matter of one or two people
PROBE_ROUNDS = 3
FORMAT = 1


@dataclass(frozen=True)
class Candidate:
    backend: str
    precision: str
    requests: int

    @property
    def label(self) -> str:
        return f"{self.backend} {self.precision} x{self.requests}"


@dataclass(frozen=True)
class Measurement:
    candidate: Candidate
    calls_per_s: float
    recall: float  # of FP32's people on the probe frames; 1.0 for FP32 itself
    problem: str = ""  # why it could not run here ("" when it ran)


@dataclass(frozen=True)
class ProbeResult:
    fingerprint: dict[str, str]
    measurements: tuple[Measurement, ...]
    seconds: float
    from_cache: bool = False

    def best(self, floor: float = RECALL_FLOOR) -> Measurement:
        usable = [m for m in self.measurements if not m.problem and m.recall >= floor and m.calls_per_s > 0]
        if not usable:
            raise ValueError("no back-end candidate ran on this machine")
        return max(usable, key=lambda m: m.calls_per_s)

    def describe(self, floor: float = RECALL_FLOOR) -> str:
        baseline = next((m.calls_per_s for m in self.measurements if m.calls_per_s), 0.0) or 1.0
        parts = []
        for m in sorted(self.measurements, key=lambda m: -m.calls_per_s):
            if m.problem:
                parts.append(f"{m.candidate.label}: {m.problem}")
                continue
            below = f" (recall {m.recall:.2f} < {floor:.2f}: not eligible)" if m.recall < floor else ""
            parts.append(f"{m.candidate.label} {m.calls_per_s:.1f} calls/s = {m.calls_per_s / baseline:.2f}x{below}")
        return "; ".join(parts)


# ------------------------------------------------------------------------------------ the candidates
def candidates(offer: MachineOffer, model_path: Path, backend: str = AUTO, precision: str = AUTO,
               requests: int = 0) -> list[Candidate]:
    """Every CPU variant this machine can run, limited to what the settings force. FP32 onnxruntime first
    (the reference for recall and the baseline of the log's ratios)."""
    backends = [ONNXRUNTIME_BACKEND] + ([OPENVINO_BACKEND] if offer.openvino else [])
    precisions = [FP32] + ([INT8] if int8_sibling(model_path).is_file() else [])
    counts = sorted({1, min(offer.cores, 4)}) if offer.cores > 1 else [1]
    out = [Candidate(b, p, r) for b in backends for p in precisions for r in counts]
    out = [c for c in out if backend in (AUTO, c.backend) and precision in (AUTO, c.precision) and requests in (0, c.requests)]
    reference = Candidate(ONNXRUNTIME_BACKEND, FP32, 1)
    return sorted(out, key=lambda c: c != reference)


def choice_for(candidate: Candidate, model_path: Path, offer: MachineOffer, threads: int, reason: str) -> BackendChoice:
    # threads 0: one request uses every core, several one thread each (split_requests); OpenVINO picks its own.
    choice = choose_backend(model_path, candidate.backend, candidate.precision, requests=candidate.requests,
                            threads=threads, offer=offer)
    return BackendChoice(choice.backend, choice.precision, choice.model_path, choice.target, choice.requests_in_flight,
                         choice.threads_per_request, reason)


# ------------------------------------------------------------------------------------ the machine and model
def fingerprint(model_path: Path, offer: MachineOffer) -> dict[str, str]:
    """What the figures depend on: a change in any of these measures again."""
    cpu_model, flags = _cpu_identity()
    files = [model_path, int8_sibling(model_path)]
    digest = hashlib.sha256()
    for path in files:
        if path.is_file():
            digest.update(path.name.encode() + hashlib.sha256(path.read_bytes()).digest())
    return {
        "format": str(FORMAT), "cpu": cpu_model, "cpu_flags": hashlib.sha256(flags.encode()).hexdigest()[:16],
        "cores": str(offer.cores), "openvino": _openvino_version() if offer.openvino else "",
        "onnxruntime": ort.__version__, "model": digest.hexdigest()[:16],
    }


def _cpu_identity() -> tuple[str, str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown", ""
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    return fields.get("model name", fields.get("Model", "unknown")), fields.get("flags", fields.get("Features", ""))


def _openvino_version() -> str:
    try:
        import openvino
    except ImportError:
        return ""
    return str(getattr(openvino, "__version__", "installed"))


def default_cache_dir() -> Path:
    cache_root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache_root) / "hybridcam" / "backend-probe"


# ------------------------------------------------------------------------------------ the cache
class ProbeCache:
    """One JSON file per model name; its fingerprint says which machine and model file it was measured on."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path(self, model_path: Path) -> Path:
        return self.folder / f"{model_path.stem}.json"

    def load(self, model_path: Path, wanted: dict[str, str]) -> tuple[ProbeResult | None, str]:
        """The cached result when it matches `wanted`, else None and why it does not."""
        path = self.path(model_path)
        try:
            data = json.loads(path.read_text())
            stored = {str(k): str(v) for k, v in data["fingerprint"].items()}
            measurements = tuple(Measurement(Candidate(**m["candidate"]), float(m["calls_per_s"]), float(m["recall"]),
                                             str(m.get("problem", ""))) for m in data["measurements"])
        except FileNotFoundError:
            return None, "not measured on this machine yet"
        except (OSError, ValueError, KeyError, TypeError) as error:
            return None, f"the cached figures in {path} are unreadable ({type(error).__name__})"
        changed = [key for key in sorted(set(stored) | set(wanted)) if stored.get(key) != wanted.get(key)]
        if changed:
            return None, f"{', '.join(changed)} changed since the last measurement"
        return ProbeResult(stored, measurements, float(data.get("seconds", 0.0)), from_cache=True), ""

    def save(self, model_path: Path, result: ProbeResult) -> None:
        path = self.path(model_path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(f".{os.getpid()}.tmp")
            partial.write_text(json.dumps({"fingerprint": result.fingerprint, "seconds": result.seconds,
                                           "measured_at": time.time(),
                                           "measurements": [asdict(m) for m in result.measurements]}, indent=1))
            partial.replace(path)
        except OSError as error:
            log.warning("back-end probe: cannot cache the figures in %s (%s); they will be measured again next start", path, error)


# ------------------------------------------------------------------------------------ measuring
def time_model_calls(pool: DetectorPool, seconds: float) -> float:
    """session.run calls per second with every detector of the pool busy on its own thread."""
    counts = [0] * pool.size
    deadline = time.perf_counter() + seconds

    def worker(index: int, detector: Detector) -> None:
        if not isinstance(detector, OnnxDetector):
            raise TypeError(f"{detector.name} is not timed by model calls")
        feed, names = {detector.input_name: detector.input_buffer}, detector.output_names
        while time.perf_counter() < deadline:
            detector.session.run(names, feed)
            counts[index] += 1

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i, d)) for i, d in enumerate(pool.detectors)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.perf_counter() - started)


def probe_frames(model_path: Path, limit: int = RECALL_FRAMES) -> list[np.ndarray]:
    """Real frames with people, none used to calibrate int8: the clips in models/probe/ (every 2nd frame);
    without them, the calibration frames in models/calibration/."""
    folder = model_path.resolve().parent
    frames = [f for clip in sorted((folder / "probe").glob("*.mp4")) for f in read_clip_frames(clip, step=2)]
    if not frames:
        frames = [f for f in (cv2.imread(str(p)) for p in sorted((folder / "calibration").glob("*.jpg"))) if f is not None]
    if len(frames) > limit:
        frames = [frames[round(i * (len(frames) - 1) / (limit - 1))] for i in range(limit)]
    return frames


def measure(
    model_path: Path, offer: MachineOffer, wanted: Sequence[Candidate], slice_s: float, threads: int = 0,
    rounds: int = PROBE_ROUNDS, score_threshold: float = 0.35, recall_frames: int = RECALL_FRAMES,
) -> ProbeResult:
    """Open each candidate, time it in interleaved rounds, and check its people against FP32's."""
    started = time.monotonic()
    frames = probe_frames(model_path, recall_frames)
    pools: dict[Candidate, DetectorPool] = {}
    problems: dict[Candidate, str] = {}
    for candidate in wanted:
        try:
            choice = choice_for(candidate, model_path, offer, threads, "probe")
            pool = open_pool(choice, score_threshold=score_threshold)
        except (ModelLoadError, ValueError, FileNotFoundError) as error:
            problems[candidate] = f"cannot run ({str(error)[:120]})"
            continue
        if pool.choice is not None and pool.choice.backend != candidate.backend:
            problems[candidate] = "cannot run (fell back to another back-end)"
            pool.close()
            continue
        pools[candidate] = pool
    try:
        recalls = _recalls(pools, frames)
        warm = frames[0] if frames else np.zeros((1080, 1920, 3), np.uint8)
        for pool in pools.values():
            for detector in pool.detectors:
                detector.detect(warm)  # fills the input buffer that the timing runs on
        rates: dict[Candidate, list[float]] = {c: [] for c in pools}
        for _ in range(rounds):
            for candidate, pool in pools.items():
                rates[candidate].append(time_model_calls(pool, slice_s))
    finally:
        for pool in pools.values():
            pool.close()
    measurements = tuple(
        Measurement(c, statistics.median(rates[c]) if c in rates else 0.0, recalls.get(c, 0.0), problems.get(c, ""))
        for c in wanted)
    return ProbeResult(fingerprint(model_path, offer), measurements, time.monotonic() - started)


def _recalls(pools: dict[Candidate, DetectorPool], frames: list[np.ndarray]) -> dict[Candidate, float]:
    """Recall of FP32's people for each candidate, once per runtime and model file (requests do not change
    the boxes); FP32 needs no check. Without frames only FP32 is eligible: an unchecked int8 could miss people."""
    recalls = {c: 1.0 for c in pools if c.precision == FP32}
    reference = next((p for c, p in pools.items() if c.precision == FP32), None)
    if reference is None or not frames:
        return recalls
    truth = [reference.first.detect(frame) for frame in frames]
    checked: dict[tuple[str, str], float] = {}
    for candidate, pool in pools.items():
        if candidate.precision == FP32:
            continue
        key = (candidate.backend, candidate.precision)
        if key not in checked:
            total = NO_FRAMES
            for expected, frame in zip(truth, frames, strict=True):
                total = total + agreement(expected, pool.first.detect(frame))
            checked[key] = total.recall
        recalls[candidate] = checked[key]
    return recalls


# ------------------------------------------------------------------------------------ the choice
Measure = Callable[[Path, MachineOffer, Sequence[Candidate], float], ProbeResult]


def probe_is_cached(model_path: Path, cache_dir: Path | None = None) -> bool:
    """Whether this machine's figures for the model are cached (a start would not measure)."""
    offer = MachineOffer.detect()
    result, _ = ProbeCache(cache_dir or default_cache_dir()).load(model_path, fingerprint(model_path, offer))
    return result is not None


def measured_choice(
    model_path: Path, backend: str = AUTO, precision: str = AUTO, *, requests: int = 0, threads: int = 0,
    offer: MachineOffer | None = None, probe_s: float = 0.5, cache_dir: Path | None = None,
    measure_with: Measure | None = None, **gpu_options: object,
) -> BackendChoice:
    """``choose_backend``, with what it leaves open on the CPU (back-end, precision, requests) settled by
    measurement. A GPU, a fully forced choice, or ``probe_s`` 0 keep the fixed rule."""
    offer = offer or MachineOffer.detect()
    ruled = choose_backend(model_path, backend, precision, requests=requests, threads=threads, offer=offer,
                           **gpu_options)  # type: ignore[arg-type]
    if ruled.backend not in (ONNXRUNTIME_BACKEND, OPENVINO_BACKEND) or probe_s <= 0 or model_path.stem.endswith(INT8_SUFFIX):
        return ruled
    wanted = candidates(offer, model_path, backend, precision, requests)
    if len(wanted) <= 1:
        return ruled
    cache = ProbeCache(cache_dir or default_cache_dir())
    result, why = cache.load(model_path, fingerprint(model_path, offer))
    if result is None or {m.candidate for m in result.measurements} < set(wanted):
        log.info("back-end probe: measuring %d candidates (%s; once, then cached in %s)",
                 len(wanted), why or "new candidates", cache.folder)
        result = (measure_with or measure)(model_path, offer, wanted, probe_s)
        cache.save(model_path, result)
    result = ProbeResult(result.fingerprint, tuple(m for m in result.measurements if m.candidate in wanted),
                         result.seconds, result.from_cache)
    try:
        best = result.best()
    except ValueError:
        log.warning("back-end probe: no candidate ran (%s); keeping the fixed rule", result.describe())
        return ruled
    source = "cached figures for this machine and model" if result.from_cache else f"measured now in {result.seconds:.0f} s"
    log.info("back-end probe (%s): %s", source, result.describe())
    reason = (f"fastest measured on this machine ({best.calls_per_s:.1f} model calls/s, recall of FP32's people "
              f"{best.recall:.2f} >= {RECALL_FLOOR}; {source})")
    return choice_for(best.candidate, model_path, offer, threads, reason)
