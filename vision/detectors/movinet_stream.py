"""``movinet-stream``: a user-supplied MoViNet *stream* model (ONNX) that classifies video one frame at a time.

MoViNet stream models (A0-A2 "stream" variants) keep causal convolution buffers and running pools as
state tensors: each call takes one frame plus the states and returns the logits so far plus the next
states. This detector keeps those states per stream (a camera, or a camera's crop), so frames of
different cameras never mix, and answers each frame with the classes whose probability reaches the
threshold, as whole-frame boxes.

Model interface (what an export must look like; docs/actions.md says how to make one):
- an image input (``image``, or the only 5-D input) float32 [1, 1, H, W, 3], RGB 0..1;
- every other input is a state tensor with a fixed shape, zeros at the start of a stream;
- the logits output (``logits``, or the only 2-D float output not paired with a state) [1, C];
- one output per state input carrying its next value: named like the input (exactly or followed by a
  suffix such as ``_out`` or ``:0``), else in the same order as the state inputs.

No MoViNet weights ship with hybridcam (none can be had from a package registry); tests run the mechanics
on a tiny model of the same interface built by scripts/build_stream_model.py.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import onnxruntime as ort
from pydantic import Field

from vision.detectors.base import Detections, ModelLoadError, StageClock, StageTiming, StreamDetector, validate_frame
from vision.detectors.onnx_session import open_session
from vision.detectors.plugin import DetectorConfig, DetectorPlugin, DetectorRuntime, register_detector

NAME = "movinet-stream"
NO_MODEL = (
    "the movinet-stream detector needs a MoViNet stream model in ONNX: set \"model\" to the .onnx file exported "
    "from a MoViNet A0, A1 or A2 *stream* SavedModel (one frame in, state tensors in and out; docs/actions.md "
    "says how to export one) and \"labels_file\" to its class names (kinetics_600 labels, one a line). "
    "hybridcam ships no MoViNet weights."
)
_DTYPES = {"tensor(float)": np.float32, "tensor(int32)": np.int32, "tensor(int64)": np.int64, "tensor(float16)": np.float16}


class MovinetStreamConfig(DetectorConfig):
    type: Literal["movinet-stream"] = "movinet-stream"
    model: str | None = Field(None, description="the MoViNet stream model (.onnx); required")
    labels_file: str | None = Field(None, description="class names, one a line (default: class0, class1, ...)")
    input_size: int = Field(172, ge=16, description="frame side for models with dynamic image axes (A0: 172, A1: 172, A2: 224)")
    score_threshold: float = Field(0.3, ge=0.0, le=1.0, description="softmax probability a class needs to be reported")
    top_k: int = Field(3, ge=1, description="classes reported per frame, at most")
    max_streams: int = Field(64, ge=1, description="streams (cameras, crops) whose state is kept; the least recently used goes")


class MovinetStreamDetector(StreamDetector):
    """Runs the stream model frame by frame, with one set of state tensors per stream key."""

    def __init__(self, session: ort.InferenceSession, path: Path, config: MovinetStreamConfig) -> None:
        self.session = session
        self.name = path.stem
        self.providers = list(session.get_providers())
        self.config = config
        inputs = session.get_inputs()
        image = next((arg for arg in inputs if arg.name == "image"), None) or next((a for a in inputs if len(a.shape) == 5), None)
        if image is None:
            raise ModelLoadError(f"{path} has no image input [1, 1, H, W, 3]; {NO_MODEL}")
        self.image_name = image.name
        side_h = image.shape[2] if isinstance(image.shape[2], int) else config.input_size
        side_w = image.shape[3] if isinstance(image.shape[3], int) else config.input_size
        self.input_size = (int(side_w), int(side_h))
        self.state_inputs = [arg for arg in inputs if arg.name != self.image_name]
        for arg in self.state_inputs:
            if not all(isinstance(d, int) for d in arg.shape) or arg.type not in _DTYPES:
                raise ModelLoadError(f"{path}: state input {arg.name} {arg.shape} {arg.type} needs a fixed shape and a numeric type")
        self.logits_name, self.state_outputs = pair_outputs([a.name for a in self.state_inputs],
                                                            [(o.name, len(o.shape)) for o in session.get_outputs()], path)
        classes = int(session.get_outputs()[[o.name for o in session.get_outputs()].index(self.logits_name)].shape[-1])
        self.labels = read_labels(config.labels_file, classes)
        self._states: OrderedDict[str, dict[str, np.ndarray]] = OrderedDict()
        self._clock = StageClock()
        self._buffer = np.empty((1, 1, self.input_size[1], self.input_size[0], 3), np.float32)

    @property
    def last_timing(self) -> StageTiming:
        return self._clock.timing

    def initial_state(self) -> dict[str, np.ndarray]:
        return {arg.name: np.zeros(arg.shape, _DTYPES[arg.type]) for arg in self.state_inputs}

    def reset(self, stream_key: str | None = None) -> None:
        """Forget one stream's state (a camera that reconnected, a crop whose track ended), or all of them."""
        if stream_key is None:
            self._states.clear()
        else:
            self._states.pop(stream_key, None)

    def logits_stream(self, stream_key: str, frame: np.ndarray) -> np.ndarray:
        """The model's logits [C] after this frame of this stream; the stream's state moves on by one frame."""
        frame = validate_frame(frame)
        state = self._states.pop(stream_key, None) or self.initial_state()
        width, height = self.input_size
        resized = cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)
        np.multiply(resized[..., ::-1], 1.0 / 255.0, out=self._buffer[0, 0], casting="unsafe")
        outputs = self.session.run([self.logits_name, *self.state_outputs], {self.image_name: self._buffer, **state})
        self._states[stream_key] = {arg.name: value for arg, value in zip(self.state_inputs, outputs[1:])}
        while len(self._states) > self.config.max_streams:
            self._states.popitem(last=False)
        return np.asarray(outputs[0], np.float32).reshape(-1)

    def detect_stream(self, stream_key: str, frame: np.ndarray) -> Detections:
        clock = self._clock
        clock.start()
        logits = self.logits_stream(stream_key, frame)
        clock.timing.infer_ms = clock.lap_ms()
        probabilities = np.exp(logits - logits.max())
        probabilities /= probabilities.sum()
        best = np.argsort(-probabilities)[: self.config.top_k]
        best = best[probabilities[best] >= self.config.score_threshold]
        height, width = frame.shape[:2]
        boxes = np.tile(np.array([0, 0, width, height], np.float32), (len(best), 1))
        clock.timing.post_ms = clock.lap_ms()
        return Detections(boxes, probabilities[best].astype(np.float32), best.astype(np.int32))


def pair_outputs(states: list[str], outputs: list[tuple[str, int]], path: Path) -> tuple[str, list[str]]:
    """(logits output, the output carrying each state's next value, in the states' order)."""
    names = [name for name, _ in outputs]
    paired: list[str | None] = []
    for state in states:
        exact = [n for n in names if n == state]
        suffixed = [n for n in names if n.startswith(state) and not n[len(state):len(state) + 1].isalnum()
                    and n != state and not any(n.startswith(other) and len(other) > len(state) for other in states)]
        paired.append(exact[0] if exact else suffixed[0] if suffixed else None)
    if None in paired:  # no naming convention: states follow the logits in the inputs' order
        rest = [n for n in names if n != "logits"] if "logits" in names else names[1:]
        if len(rest) != len(states):
            raise ModelLoadError(f"{path}: {len(states)} state inputs but {len(rest)} other outputs; {NO_MODEL}")
        paired = list(rest)
    left = [(name, rank) for name, rank in outputs if name not in paired]
    logits = next((name for name, _ in left if name == "logits"), None) or next((n for n, rank in left if rank == 2), None)
    if logits is None:
        raise ModelLoadError(f"{path}: no logits output [1, classes]; {NO_MODEL}")
    return logits, [str(name) for name in paired]


def read_labels(labels_file: str | None, classes: int) -> tuple[str, ...]:
    if labels_file is None:
        return tuple(f"class{i}" for i in range(classes))
    lines = [line.strip() for line in Path(labels_file).read_text().splitlines() if line.strip()]
    if len(lines) != classes:
        raise ModelLoadError(f"labels file {labels_file} has {len(lines)} names for a model with {classes} classes")
    return tuple(lines)


def build_movinet_stream(config: Any, runtime: DetectorRuntime) -> MovinetStreamDetector:
    assert isinstance(config, MovinetStreamConfig)
    if not config.model:
        raise ModelLoadError(NO_MODEL[0].upper() + NO_MODEL[1:])
    path = Path(config.model)
    if not path.suffix and not path.is_file():  # a short name: the models folder
        path = runtime.models_dir / f"{config.model}.onnx"
    session = open_session(path, runtime.providers, runtime.intra_op_num_threads)
    return MovinetStreamDetector(session, path, config)


register_detector(DetectorPlugin(NAME, MovinetStreamConfig, build=build_movinet_stream))
