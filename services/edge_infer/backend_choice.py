"""Choose the detector back-end, precision and number of requests in flight, and say why.

Automatic order: a GPU through onnxruntime (TensorRT, then CUDA) when this onnxruntime build offers
one; otherwise the CPU, where OpenVINO (when installed) runs the model faster than onnxruntime, and
the int8 model (built by scripts/quantize_detector.py, `<model>-int8.onnx` beside the FP32 one) is
used where the CPU has int8 dot-product instructions (AVX512-VNNI, AVX-VNNI or AMX): without them
int8 gains little. That CPU rule is the fallback: on the CPU, edge_infer settles what is left on auto
by measurement (backend_probe.py). Settings force a back-end and/or a precision; a forced choice that this machine
cannot run fails at start with one sentence instead of quietly running something else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import onnxruntime as ort

from vision.detectors.onnx_session import usable_cores
from vision.detectors.openvino_session import OpenVinoTarget, openvino_available
from vision.providers import CPU, CUDA, TENSORRT, ProviderChoice, choose_providers

AUTO = "auto"
TENSORRT_BACKEND, CUDA_BACKEND, OPENVINO_BACKEND, ONNXRUNTIME_BACKEND = "tensorrt", "cuda", "openvino", "onnxruntime"
BACKENDS = (AUTO, TENSORRT_BACKEND, CUDA_BACKEND, OPENVINO_BACKEND, ONNXRUNTIME_BACKEND)
FP32, FP16, INT8, BF16 = "fp32", "fp16", "int8", "bf16"
PRECISIONS = (AUTO, FP32, INT8, BF16)
INT8_SUFFIX = "-int8"
INT8_DOT_PRODUCT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
MAX_REQUESTS_IN_FLIGHT = 4


@dataclass(frozen=True)
class CpuFeatures:
    int8_dot_product: str = ""  # the flag that makes int8 pay, "" when none
    bf16: bool = False

    @classmethod
    def from_flags(cls, flags: Sequence[str]) -> CpuFeatures:
        present = set(flags)
        vnni = next((flag for flag in INT8_DOT_PRODUCT_FLAGS if flag in present), "")
        return cls(int8_dot_product=vnni, bf16="avx512_bf16" in present or "amx_bf16" in present)

    @classmethod
    def of_this_machine(cls) -> CpuFeatures:
        try:
            text = Path("/proc/cpuinfo").read_text()
        except OSError:
            return cls()
        for line in text.splitlines():
            if line.startswith("flags"):
                return cls.from_flags(line.split(":", 1)[1].split())
        return cls()


@dataclass(frozen=True)
class MachineOffer:
    """What this machine can run: onnxruntime providers, whether OpenVINO is installed, CPU features, cores."""

    providers: tuple[str, ...]
    openvino: bool
    cpu: CpuFeatures
    cores: int

    @classmethod
    def detect(cls) -> MachineOffer:
        return cls(tuple(ort.get_available_providers()), openvino_available(), CpuFeatures.of_this_machine(),
                   usable_cores())


@dataclass(frozen=True)
class BackendChoice:
    backend: str
    precision: str
    model_path: Path
    target: ProviderChoice | OpenVinoTarget
    requests_in_flight: int
    threads_per_request: int
    reason: str

    def describe(self) -> str:
        threads = f"{self.threads_per_request} thread(s) each" if self.threads_per_request else "threads chosen by OpenVINO"
        return (f"back-end {self.backend}, {self.precision.upper()}, model {self.model_path.name}, "
                f"{self.requests_in_flight} request(s) in flight ({threads}): {self.reason}")

    def fallback_to_onnxruntime(self, why: str) -> BackendChoice:
        """The same model and precision on onnxruntime's CPU provider (used when OpenVINO fails to load it)."""
        return replace(
            self, backend=ONNXRUNTIME_BACKEND, precision=self.precision if self.precision == INT8 else FP32,
            target=choose_providers([CPU], available=[CPU]),
            threads_per_request=self.threads_per_request or 1, reason=f"OpenVINO failed ({why}); onnxruntime CPU instead",
        )


def int8_sibling(model_path: Path) -> Path:
    return model_path.with_name(f"{model_path.stem}{INT8_SUFFIX}{model_path.suffix}")


def fp32_sibling(model_path: Path) -> Path:
    stem = model_path.stem
    return model_path.with_name(f"{stem[: -len(INT8_SUFFIX)]}{model_path.suffix}") if stem.endswith(INT8_SUFFIX) else model_path


def split_requests(cores: int, requests: int) -> tuple[int, int]:
    """(requests in flight, threads per request): several 1-thread requests beat one many-thread one on few cores."""
    count = requests or max(1, min(cores, MAX_REQUESTS_IN_FLIGHT))
    return count, max(1, cores // count)


def choose_backend(
    model_path: Path,
    backend: str = AUTO,
    precision: str = AUTO,
    *,
    requests: int = 0,
    threads: int = 0,
    offer: MachineOffer | None = None,
    allowed_providers: Sequence[str] | None = None,
    trt_cache_dir: Path | None = None,
    fp16: bool = True,
) -> BackendChoice:
    """Pick back-end, precision and model file; raises ValueError (one sentence) for a choice this machine cannot run."""
    backend, precision = backend.lower().strip() or AUTO, precision.lower().strip() or AUTO
    if backend not in BACKENDS:
        raise ValueError(f"Unknown edge back-end {backend!r}; choose from {', '.join(BACKENDS)}.")
    if precision not in PRECISIONS:
        raise ValueError(f"Unknown edge precision {precision!r}; choose from {', '.join(PRECISIONS)}.")
    offer = offer or MachineOffer.detect()
    if model_path.stem.endswith(INT8_SUFFIX):
        if precision not in (AUTO, INT8):
            raise ValueError(f"Model {model_path.name} is int8; precision {precision} needs the FP32 model.")
        precision = INT8
    gpu = _gpu_backend(backend, offer, allowed_providers)
    if gpu:
        return _gpu_choice(gpu, precision, model_path, offer, allowed_providers, trt_cache_dir, fp16)
    return _cpu_choice(backend, precision, model_path, offer, requests, threads)


def _gpu_backend(backend: str, offer: MachineOffer, allowed: Sequence[str] | None) -> str:
    permitted = set(allowed) if allowed else {TENSORRT, CUDA, CPU}
    usable = {name for name in (TENSORRT, CUDA) if name in offer.providers and name in permitted}
    if backend == TENSORRT_BACKEND and TENSORRT not in usable:
        raise ValueError(f"Back-end tensorrt was asked for, but this onnxruntime build offers {', '.join(offer.providers)}.")
    if backend == CUDA_BACKEND and CUDA not in usable:
        raise ValueError(f"Back-end cuda was asked for, but this onnxruntime build offers {', '.join(offer.providers)}.")
    if backend in (TENSORRT_BACKEND, CUDA_BACKEND):
        return backend
    if backend == AUTO and usable:
        return TENSORRT_BACKEND if TENSORRT in usable else CUDA_BACKEND
    return ""


def _gpu_choice(
    gpu: str, precision: str, model_path: Path, offer: MachineOffer, allowed: Sequence[str] | None,
    trt_cache_dir: Path | None, fp16: bool,
) -> BackendChoice:
    if precision in (INT8, BF16):
        raise ValueError(f"Precision {precision} runs on the CPU back-ends only; on {gpu} use auto or fp32.")
    providers = [TENSORRT, CUDA, CPU] if gpu == TENSORRT_BACKEND else [CUDA, CPU]
    if allowed:
        providers = [name for name in providers if name in allowed] or [CPU]
    target = choose_providers(providers, trt_cache_dir, fp16 and precision == AUTO, available=offer.providers)
    chosen = FP16 if gpu == TENSORRT_BACKEND and fp16 and precision == AUTO else FP32
    return BackendChoice(gpu, chosen, fp32_sibling(model_path), target, 1, 0,
                         f"a GPU provider is available; {target.description}")


def _cpu_choice(
    backend: str, precision: str, model_path: Path, offer: MachineOffer, requests: int, threads: int
) -> BackendChoice:
    notes = ["no GPU provider in this onnxruntime build" if backend == AUTO else f"{backend} forced"]
    if backend == OPENVINO_BACKEND and not offer.openvino:
        raise ValueError("Back-end openvino was asked for, but the `openvino` package is not installed.")
    runtime = backend if backend in (OPENVINO_BACKEND, ONNXRUNTIME_BACKEND) else (
        OPENVINO_BACKEND if offer.openvino else ONNXRUNTIME_BACKEND)
    if backend == AUTO:
        notes.append("OpenVINO installed (faster than onnxruntime on x86 CPUs)" if offer.openvino
                     else "OpenVINO not installed")
    if precision == BF16 and runtime != OPENVINO_BACKEND:
        raise ValueError("Precision bf16 needs the openvino back-end.")
    int8_path = model_path if model_path.stem.endswith(INT8_SUFFIX) else int8_sibling(model_path)
    if precision == INT8 and not int8_path.is_file():
        raise ValueError(f"No int8 model {int8_path.name} next to {model_path.name}: build it with scripts/quantize_detector.py.")
    if precision == AUTO:
        precision, note = _auto_cpu_precision(offer.cpu, int8_path)
        notes.append(note)
    path = int8_path if precision == INT8 else fp32_sibling(model_path)
    count, per_request = split_requests(offer.cores, requests)
    if threads:
        per_request = threads
    if runtime == OPENVINO_BACKEND:
        hint = "THROUGHPUT" if count > 1 else "LATENCY"
        target: ProviderChoice | OpenVinoTarget = OpenVinoTarget(
            precision_hint={FP32: "f32", BF16: "bf16"}.get(precision, ""), performance_hint=hint, threads=threads)
        per_request = threads
    else:
        target = choose_providers([CPU], available=[CPU])
    return BackendChoice(runtime, precision, path, target, count, per_request, "; ".join(notes))


def _auto_cpu_precision(cpu: CpuFeatures, int8_path: Path) -> tuple[str, str]:
    if not int8_path.is_file():
        return FP32, f"no {int8_path.name} beside the model, so FP32"
    if not cpu.int8_dot_product:
        return FP32, "this CPU has no int8 dot-product instructions (VNNI/AMX), so FP32"
    return INT8, f"CPU has {cpu.int8_dot_product}, so int8 ({int8_path.name})"


