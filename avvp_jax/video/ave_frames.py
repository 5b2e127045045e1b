"""AVE's frames: which frames of a 10-s video make each second's VGG-19 map, and their preprocessing.

How the released AVE `visual_feature.h5` was made (AVE-ECCV18's feature script, linked from its README; the
same code is in its `attention_visualization.py` and in the copies its users posted, docs/videos.md "AVE
features" gives the evidence):

  1. every frame of the video is read at its own rate (`imageio.get_reader(video, 'ffmpeg')`: ffmpeg's rgb24
     pipe, no `-r`) and resized to 224x224 by `cv2.resize(im, (224, 224))` (bilinear, the aspect ratio NOT
     kept, no crop, no antialiasing);
  2. with n frames and t = 10 seconds, `frame_interval = int(n / t)`; second l takes the 16 frames
     `int(l * frame_interval + (i / 16) * frame_interval)`, i = 0..15 (`video_frame_sample`): 160 frames;
  3. each frame goes through VGG-19 up to `block5_pool` ([7, 7, 512]), and a second's 16 maps are averaged:
     `[10, 7, 7, 512]` per video.

`segment_frame_indices` is step 2, `cv2_linear_resize` step 1's resize (cv2's pixel-centre rule in floating
point, rounded: within one grey level of cv2's 11-bit fixed-point arithmetic), `vgg_transform` the whole
per-frame preprocessing and `iter_native_windows` cuts a video of any length into 10-s windows of native
frames. A window shorter than 10 s (a short video, the end of a long one) keeps its frames at their own times:
the interval is the frame rate, the indices past its last frame repeat it (the official expression would
stretch them over 10 s), and `segment_mask` says which seconds lie inside the video.

Normalisation: the official script fed Keras's VGG19 (the original Caffe weights) with Keras's
`preprocess_input` ("caffe": RGB to BGR, minus the BGR mean pixel 103.939, 116.779, 123.68, no scaling). This
port holds torchvision's VGG-19 weights, trained with torchvision's normalisation ((x / 255 - mean) / std, RGB);
`vgg_transform` gives either ("torchvision", the default, to match these weights; "caffe" for weights
converted from Keras / Caffe). With torchvision's weights the maps differ from the released ones (another
training of the network), though the layout, frames and pooling are the same.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator

import av
import numpy as np

from avvp_jax.errors import InputError
from avvp_jax.video import decode
from avvp_jax.video import image_transforms

SECONDS = 10  # `t = 10`: an AVE video
FRAMES_PER_SECOND = 16  # `sample_num = 16`
IMAGE_SIZE = 224  # `cv2.resize(im, (224, 224))`
MERGE_SECONDS = (
    0.5  # a last window under this long joins the one before (a 10.2-s AVE video is one window)
)
TORCHVISION_MEAN = image_transforms.RESNET_MEAN  # ImageNet, RGB, on [0, 1]
TORCHVISION_STD = image_transforms.RESNET_STD
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)  # Keras `preprocess_input(mode="caffe")`
PREPROCESSINGS = ("torchvision", "caffe")


def segment_frame_indices(
    num_frames: int,
    *,
    frame_interval: int | None = None,
    seconds: int = SECONDS,
    per_second: int = FRAMES_PER_SECOND,
) -> np.ndarray:
  """The frames of each second: the official `video_frame_sample(int(n / t), t, 16)`.

  Args:
    num_frames: n, the frames of the window (>= 1).
    frame_interval: frames per second to space by; None: the official `int(n / seconds)` (a full window).
      A short window passes its frame rate (rounded) and its frames keep their own times.
    seconds: t (10).
    per_second: frames per second kept (16).

  Returns:
    int64 `[seconds, per_second]`: indices into the window's frames; indices past the last frame are the
    last frame (the official script would fail there; a full window never gets them).
  """
  if num_frames < 1:
    raise InputError(
        f"segment_frame_indices needs at least one frame, got num_frames={num_frames}."
    )
  interval = num_frames // seconds if frame_interval is None else int(frame_interval)
  second = np.arange(seconds, dtype=np.float64)[:, None]
  step = np.arange(per_second, dtype=np.float64)[None, :] * 1.0 / per_second
  indices = np.floor(second * interval + step * interval).astype(np.int64)
  return np.minimum(indices, num_frames - 1)


def _linear_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
  """cv2's INTER_LINEAR source taps along one axis: (left index [out], right weight [out]).

  Source coordinate of output pixel d: (d + 0.5) * in / out - 0.5 (in float32, as cv2 has it); its floor is the left tap and the
  fraction the right tap's weight; left of the first pixel the first is taken whole, at or past the last
  pixel the last is.
  """
  scale = 1.0 / (out_size / in_size)  # cv2: scale_x = 1. / inv_scale_x, inv_scale_x = dst / src
  coord = ((np.arange(out_size, dtype=np.float64) + 0.5) * scale - 0.5).astype(np.float32)
  left = np.floor(coord).astype(np.int64)
  frac = (coord - left.astype(np.float32)).astype(np.float64)  # cv2: float fx = ...; fx -= sx
  frac = np.where(left < 0, 0.0, frac)
  left = np.maximum(left, 0)
  at_end = left >= in_size - 1
  frac = np.where(at_end, 0.0, frac)
  left = np.where(at_end, in_size - 1, left)
  return left, frac


def cv2_linear_resize(
    frames: np.ndarray, height: int = IMAGE_SIZE, width: int = IMAGE_SIZE
) -> np.ndarray:
  """`cv2.resize(frame, (width, height))` (INTER_LINEAR) of uint8 frames, in floating point, rounded.

  Args:
    frames: uint8 `[N, H, W, 3]`.
    height, width: the output size (224, 224 for AVE; the aspect ratio is not kept).

  Returns:
    uint8 `[N, height, width, 3]`.
  """
  frames = np.asarray(frames)
  rows, row_frac = _linear_taps(frames.shape[1], height)
  cols, col_frac = _linear_taps(frames.shape[2], width)
  rows1 = np.minimum(rows + 1, frames.shape[1] - 1)
  cols1 = np.minimum(cols + 1, frames.shape[2] - 1)
  x = frames.astype(np.float64)
  cf = col_frac[None, None, :, None]
  horizontal = lambda r: x[:, r][:, :, cols] * (1.0 - cf) + x[:, r][:, :, cols1] * cf
  rf = row_frac[None, :, None, None]
  out = horizontal(rows) * (1.0 - rf) + horizontal(rows1) * rf
  return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def normalize(images: np.ndarray, preprocessing: str = "torchvision") -> np.ndarray:
  """224x224 uint8 RGB `[N, 224, 224, 3]` -> VGG-19's float32 input.

  "torchvision": `(x / 255 - mean) / std` in RGB (torchvision's weights); "caffe": Keras's
  `preprocess_input`, BGR minus the mean pixel (the official script's, for Caffe / Keras weights).
  """
  if preprocessing == "torchvision":
    return image_transforms.normalize(images, TORCHVISION_MEAN, TORCHVISION_STD)
  if preprocessing == "caffe":
    bgr = np.asarray(images, np.float32)[..., ::-1]
    return bgr - np.asarray(CAFFE_MEAN_BGR, np.float32)
  raise InputError(
      f"unknown VGG-19 preprocessing {preprocessing!r}: use one of {', '.join(PREPROCESSINGS)}."
  )


def vgg_transform(frames: np.ndarray, preprocessing: str = "torchvision") -> np.ndarray:
  """The per-frame preprocessing: `cv2_linear_resize` to 224x224, then `normalize`.

  Args:
    frames: uint8 `[N, H, W, 3]` RGB, the video's own size.
    preprocessing: "torchvision" or "caffe" (`normalize`).

  Returns:
    float32 `[N, 224, 224, 3]`: the input of `vgg19.embed`.
  """
  frames = image_transforms._check_frames(frames, "the VGG-19 transform")  # pylint: disable=protected-access
  return normalize(cv2_linear_resize(frames), preprocessing)


@dataclasses.dataclass(frozen=True)
class NativeWindow:
  """One 10-s window of a video's frames at their own rate, resized to 224x224 as the official script does.

  Attributes:
    index: k, the window's place (it starts at 10k s).
    frames: uint8 `[n, 224, 224, 3]` RGB (`cv2_linear_resize` of every decoded frame).
    frame_interval: the frame interval of `segment_frame_indices` (None: the official int(n / 10) of a full
      window; a short window's rounded frame rate).
    segment_mask: bool `[10]`: second s lies inside the video.
    thumbnails: (time in seconds, small uint8 `[h, w, 3]` frame at the video's aspect) at 0, 2.5, 5 and 7.5 s.
  """

  index: int
  frames: np.ndarray
  frame_interval: int | None
  segment_mask: np.ndarray
  thumbnails: list[tuple[float, np.ndarray]]

  def selected(self) -> np.ndarray:
    """uint8 `[10, 16, 224, 224, 3]`: each second's 16 frames (`segment_frame_indices`)."""
    indices = segment_frame_indices(len(self.frames), frame_interval=self.frame_interval)
    return self.frames[indices]


THUMBNAIL_SECONDS = (0.0, 2.5, 5.0, 7.5)


def _thumbnail(frame: np.ndarray, height: int = 72) -> np.ndarray:
  rows = np.linspace(0, frame.shape[0] - 1, height).round().astype(int)
  width = max(1, round(frame.shape[1] * height / frame.shape[0]))
  cols = np.linspace(0, frame.shape[1] - 1, width).round().astype(int)
  return frame[rows][:, cols]


def _decoded_frames(path: str) -> Iterator[tuple[float, np.ndarray]]:
  """(time in seconds from the first frame, uint8 `[H, W, 3]` RGB) of every frame, in order."""
  with decode._open(path) as container:  # pylint: disable=protected-access
    stream = decode._video_stream(container, path)  # pylint: disable=protected-access
    stream.thread_type = "AUTO"
    first = None
    try:
      for frame in container.decode(stream):
        time = float(frame.time) if frame.time is not None else 0.0
        first = time if first is None else first
        yield time - first, frame.to_ndarray(format="rgb24")
    except av.error.FFmpegError as e:
      raise InputError(
          f"{path}: a video frame cannot be decoded ({e.strerror}); check the file."
      ) from None


def iter_native_windows(
    path: str, *, window_seconds: int = SECONDS, duration_s: float | None = None
) -> Iterator[NativeWindow]:
  """The 10-s windows of a video, one at a time (one window's 224x224 frames in memory).

  A frame belongs to window floor(time / 10); a last window under `MERGE_SECONDS` joins the one before.

  Raises:
    InputError: a missing or unreadable file, no video stream, no decodable frame.
  """
  if duration_s is None:
    duration_s = decode.probe(path).duration_s
  rate = None

  def window(index: int, items: list[tuple[float, np.ndarray]]) -> NativeWindow:
    nonlocal rate
    times = np.array([t for t, _ in items])
    if rate is None and len(times) > 1:
      rate = max(1, int(round((len(times) - 1) / max(times[-1] - times[0], 1e-9))))
    full = duration_s - index * window_seconds >= window_seconds - MERGE_SECONDS
    return NativeWindow(
        index=index,
        frames=np.stack([f for _, f in items]),
        frame_interval=None if full else (rate or 1),
        segment_mask=decode._segment_mask(index, duration_s, window_seconds),  # pylint: disable=protected-access
        thumbnails=[thumbs.pop(key) for key in sorted(thumbs) if key[0] == index],
    )

  # (window, seconds into it) -> (time, thumbnail): the first frame at or after each THUMBNAIL_SECONDS.
  thumbs: dict[tuple[int, float], tuple[float, np.ndarray]] = {}
  index, current, pending = 0, [], []
  for time, raw in _decoded_frames(path):
    k = int(time // window_seconds)
    for offset in THUMBNAIL_SECONDS:
      if (k, offset) not in thumbs and time + 1e-9 >= k * window_seconds + offset:
        thumbs[(k, offset)] = (k * window_seconds + offset, _thumbnail(raw))
    item = (time, cv2_linear_resize(raw[None])[0])
    if k <= index:
      current.append(item)
      continue
    pending.append(item)
    if time >= (index + 1) * window_seconds + MERGE_SECONDS:
      yield window(index, current)
      index, current, pending = index + 1, pending, []
  if not current:
    raise InputError(f"{path}: no video frame could be decoded; check the file.")
  yield window(index, current + pending)
