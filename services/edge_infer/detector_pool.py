"""Several detector instances with requests in flight at once, opened from one BackendChoice.

Each instance owns its input buffers (a detector is not thread-safe); onnxruntime and OpenVINO
release the GIL while they infer, so N instances on N threads keep N requests in flight. The pool
only runs detectors: reading frames, publishing results and acknowledging entries stay with the
caller's thread, so each result is still written and acknowledged in one transaction.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from queue import SimpleQueue
from typing import Any, TypeVar

import numpy as np

from services.edge_infer.backend_choice import OPENVINO_BACKEND, BackendChoice
from vision.detectors.base import Detections, Detector, ModelLoadError
from vision.detectors.registry import load_detector

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")
Outcome = Detections | Exception


def start_every_worker(executor: ThreadPoolExecutor, workers: int, timeout_s: float = 30.0) -> None:
    """Start the executor's threads now, before any inference: it starts them lazily otherwise, and a thread
    started while another is inside the runtime once hung the service (the new thread never began)."""
    barrier = threading.Barrier(workers)
    for started in [executor.submit(barrier.wait, timeout_s) for _ in range(workers)]:
        started.result()


class DetectorPool:
    def __init__(self, detectors: Sequence[Detector], choice: BackendChoice | None = None) -> None:
        if not detectors:
            raise ValueError("A detector pool needs at least one detector.")
        self.detectors = list(detectors)
        self.choice = choice
        self._idle: SimpleQueue[Detector] = SimpleQueue()
        for detector in self.detectors:
            self._idle.put(detector)
        self._executor = ThreadPoolExecutor(len(self.detectors), "detector") if len(self.detectors) > 1 else None
        if self._executor is not None:
            start_every_worker(self._executor, len(self.detectors))

    @property
    def size(self) -> int:
        return len(self.detectors)

    @property
    def first(self) -> Detector:
        return self.detectors[0]

    def detect_all(self, frames: Sequence[np.ndarray], catch: tuple[type[Exception], ...] = (ValueError,)) -> list[Outcome]:
        """Detections for each frame (or the exception one raised), in order, up to `size` at a time."""
        if self._executor is None or len(frames) <= 1:
            return [self._detect(frame, catch) for frame in frames]
        return list(self._executor.map(lambda frame: self._detect(frame, catch), frames))

    def map(self, work: Callable[[Detector, T], R], items: Sequence[T]) -> list[R]:
        """Run work(detector, item) for each item on an idle detector; results in order."""
        def run(item: T) -> R:
            detector = self._idle.get()
            try:
                return work(detector, item)
            finally:
                self._idle.put(detector)

        if self._executor is None or len(items) <= 1:
            return [run(item) for item in items]
        return list(self._executor.map(run, items))

    def _detect(self, frame: np.ndarray, catch: tuple[type[Exception], ...]) -> Outcome:
        detector = self._idle.get()
        try:
            return detector.detect(frame)
        except catch as error:
            return error
        finally:
            self._idle.put(detector)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)


def open_pool(choice: BackendChoice, **detector_options: Any) -> DetectorPool:
    """Open `choice.requests_in_flight` detectors; an OpenVINO failure falls back to onnxruntime (logged)."""
    try:
        return DetectorPool(_open(choice, **detector_options), choice)
    except ModelLoadError as error:
        if choice.backend != OPENVINO_BACKEND:
            raise
        fallback = choice.fallback_to_onnxruntime(str(error))
        log.warning("OpenVINO could not load %s (%s): falling back to onnxruntime on the CPU", choice.model_path, error)
        return DetectorPool(_open(fallback, **detector_options), fallback)


def _open(choice: BackendChoice, **detector_options: Any) -> list[Detector]:
    threads = choice.threads_per_request or None
    return [
        load_detector(choice.model_path, choice.target, intra_op_num_threads=threads, **detector_options)
        for _ in range(choice.requests_in_flight)
    ]
