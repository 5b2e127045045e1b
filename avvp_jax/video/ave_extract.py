"""AVE's released feature layout from videos: VGGish audio `[10, 128]` and VGG-19 pool5 maps `[10, 7, 7, 512]`.

`AveExtractor` holds VGGish (as for LLP: `vggish.waveform_to_examples` with one example per second) and the
VGG-19 port (`vgg19`), and `video_features` turns a video into its 10-s windows' features: each second's map is
the mean of its 16 frames' pool5 maps (`ave_frames`, docs/videos.md "AVE features").

`extract_folder` (`launch/extract_features.py --layout=ave`) writes a folder the AVE task reads
(`avvp_jax.tasks.ave.features`, `annotations.load_order`):

  audio_feature.h5        dataset `avadataset`, float32 [N, 10, 128]
  visual_feature.h5       dataset `avadataset`, float32 [N, 10, 7, 7, 512] (the released file is float64;
                          float32 is what the readers compute in, at half the size)
  clips.txt               row i's clip id (`<stem>` for a video of one window, else `<stem>__<start>_<end>`)
  test_order.h5           dataset `order`: every row, in order; train_order.h5 and val_order.h5 empty
  Annotations.template.txt   AVE's `Category&VideoID&Quality&StartTime&EndTime` rows in row order with
                          the category and times to fill in: the labels are the user's (rename it to
                          Annotations.txt to train or score with `config.data.ave.labels_dir` = this folder)
  extraction.json         per video: its rows (clips), their valid seconds, failures; the weights used

The h5 files are written under temporary names and renamed when every video is done (a stopped run leaves
no partial file; a rerun extracts again).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from typing import Any, Callable

from flax import linen as nn
import jax
import numpy as np

from avvp_jax import reporting
from avvp_jax.errors import InputError
from avvp_jax.tasks.ave import annotations
from avvp_jax.tasks.ave import features as ave_features
from avvp_jax.video import ave_frames
from avvp_jax.video import decode
from avvp_jax.video import extract
from avvp_jax.video import vgg19
from avvp_jax.video import vggish
from avvp_jax.video import weights as weights_lib

CLIPS_TXT = "clips.txt"
TEMPLATE = "Annotations.template.txt"
MANIFEST = "extraction.json"
DTYPE = np.float32
# VGG-19 frames per call: its first maps are 224x224x64 float32 per frame (12.8 MB), so a whole window's 160
# at once needs several GB on a CPU host; an accelerator takes more (frame_batch=160).
FRAME_BATCH = 16
# The VGG-19 weights: name -> (its file, its input normalisation, `ave_frames.normalize`). "keras" is the
# network of the released AVE features (Keras's VGG19, the Caffe weights); "torchvision" its PyTorch
# counterpart (trained anew by torchvision: another network of the same architecture).
VGG_NETWORKS = {
    "torchvision": (vgg19.WEIGHT_FILE, "torchvision"),
    "keras": (vgg19.KERAS_WEIGHT_FILE, "caffe"),
}


class AveExtractor:
  """VGGish and VGG-19, ready to embed AVE windows.

  Attributes:
    weights: "pretrained" (VGGish's file and torchvision's VGG-19) or "random".
    params: {"audio": VGGish params, "visual": VGG-19 variables}.
    sources: where each came from.
    network: whose VGG-19 weights ("torchvision" or "keras", `VGG_NETWORKS`).
    preprocessing: VGG-19's input normalisation for them (`ave_frames.normalize`).
  """

  def __init__(
      self,
      weights: str = "pretrained",
      *,
      weights_dir: str | os.PathLike[str] | None = None,
      download: bool = True,
      frame_batch: int = FRAME_BATCH,
      seed: int = 0,
      module: nn.Module | None = None,
      network: str = "torchvision",
  ):
    """Loads (or randomly initialises) the two networks.

    Args:
      weights: "pretrained" or "random".
      weights_dir: a folder holding the weight files; None: torch's cache (see `weights.find`).
      download: whether a missing file may be downloaded.
      frame_batch: frames per VGG-19 call (a window's 160 in ceil(160 / frame_batch) calls of one shape;
        `FRAME_BATCH` by default, for a CPU host's memory).
      seed: the random networks' seed.
      module: another VGG (narrow, for tests); random weights only.
      network: whose VGG-19 weights (`VGG_NETWORKS`): "torchvision" (vgg19-dcbb9e9d.pth, torchvision's
        normalisation) or "keras" (Keras's h5, the Caffe weights the released features came from, with
        Keras's "caffe" preprocessing).

    Raises:
      InputError: an unknown `weights`, a missing or unreadable weight file, `module` with pretrained weights.
    """
    weights_lib.check_mode(weights)
    if network not in VGG_NETWORKS:
      raise InputError(f"unknown VGG-19 network {network!r}: use one of {', '.join(VGG_NETWORKS)}.")
    vgg_file, preprocessing = VGG_NETWORKS[network]
    if frame_batch < 1:
      raise InputError(f"frame_batch={frame_batch} must be positive.")
    if module is not None and weights != "random":
      raise InputError("another VGG (module=) takes random weights only.")
    self.weights = weights
    self.frame_batch = int(frame_batch)
    self.module = module or vgg19.MODEL
    self.network = network
    self.preprocessing = preprocessing
    audio_key, visual_key = jax.random.split(jax.random.key(seed))
    if weights == "random":
      self.params = {
          "audio": vggish.init_params(audio_key),
          "visual": vgg19.init_params(visual_key, self.module),
      }
      self.sources = {name: weights_lib.RANDOM_WEIGHTS_NOTE for name in self.params}
    else:
      paths = {
          "audio": weights_lib.find(vggish.WEIGHT_FILE, weights_dir, download=download),
          "visual": weights_lib.find(vgg_file, weights_dir, download=download),
      }
      if network == "keras":
        visual = vgg19.params_from_keras_h5(paths["visual"], self.module)
      else:
        visual = vgg19.params_from_state_dict(
            weights_lib.load_state_dict(paths["visual"]), self.module
        )
      self.params = {
          "audio": vggish.params_from_state_dict(weights_lib.load_state_dict(paths["audio"])),
          "visual": visual,
      }
      self.sources = paths

  @property
  def random(self) -> bool:
    return self.weights == "random"

  def audio(self, waveform: np.ndarray) -> np.ndarray:
    """VGGish of one window: `[160000]` float32 16-kHz mono -> `[10, 128]` float32 (as for LLP)."""
    return extract.window_vggish(self.params["audio"], waveform)

  def maps(self, frames: np.ndarray) -> np.ndarray:
    """VGG-19 pool5 maps of 224x224 uint8 frames `[N, 224, 224, 3]` -> `[N, 7, 7, 512]` float32."""
    images = ave_frames.normalize(frames, self.preprocessing)
    outputs = []
    for start in range(0, images.shape[0], self.frame_batch):
      chunk, n = extract._ensure_size(  # pylint: disable=protected-access
          images[start : start + self.frame_batch], self.frame_batch
      )
      outputs.append(np.asarray(vgg19.embed(self.params["visual"], chunk, module=self.module))[:n])
    return np.concatenate(outputs).astype(np.float32)

  def visual(self, window: ave_frames.NativeWindow) -> np.ndarray:
    """`[10, 7, 7, 512]`: the mean of each second's 16 frames' maps (the official pooling)."""
    selected = window.selected()  # [10, 16, 224, 224, 3]
    seconds, per_second = selected.shape[:2]
    maps = self.maps(selected.reshape(-1, *selected.shape[2:]))
    return maps.reshape(seconds, per_second, *maps.shape[1:]).mean(axis=1)


@dataclasses.dataclass(frozen=True)
class AveVideoFeatures:
  """The AVE-layout features of every window of one video.

  Attributes:
    path, duration_s, has_audio, segment_mask `[K, 10]`, thumbnails: as `extract.VideoFeatures`.
    features: "audio" `[K, 10, 128]`, "visual" `[K, 10, 7, 7, 512]`, float32.
  """

  path: str
  duration_s: float
  has_audio: bool
  segment_mask: np.ndarray
  features: dict[str, np.ndarray]
  thumbnails: list[tuple[float, np.ndarray]]

  @property
  def num_windows(self) -> int:
    return int(self.segment_mask.shape[0])


def video_features(
    path: str, extractor: AveExtractor, *, require_audio: bool = False
) -> AveVideoFeatures:
  """Decodes one video window by window and extracts each window's AVE features.

  Raises:
    InputError: a bad video, or no audio track with `require_audio` (else VGGish of silence stands in).
  """
  info = decode.probe(path)
  if require_audio and not info.has_audio:
    raise InputError(f"{path} has no audio track: AVE's layout needs VGGish audio features.")
  waveform = decode.read_audio(path) if info.has_audio else None
  window_samples = decode.SAMPLE_RATE * ave_frames.SECONDS
  audio, visual, masks, thumbnails = [], [], [], []
  for window in ave_frames.iter_native_windows(path, duration_s=info.duration_s):
    piece = np.zeros(window_samples, np.float32)
    if waveform is not None:
      part = waveform[window.index * window_samples : (window.index + 1) * window_samples]
      piece[: len(part)] = part
    audio.append(extractor.audio(piece))
    visual.append(extractor.visual(window))
    masks.append(window.segment_mask)
    thumbnails.extend(window.thumbnails)
  return AveVideoFeatures(
      path=path,
      duration_s=float(info.duration_s),
      has_audio=bool(info.has_audio),
      segment_mask=np.stack(masks),
      features={"audio": np.stack(audio), "visual": np.stack(visual)},
      thumbnails=thumbnails,
  )


def _write_order(path: str, rows: np.ndarray) -> None:
  import h5py  # pylint: disable=g-import-not-at-top  (only when writing)

  with h5py.File(path, "w") as h5:
    h5.create_dataset(annotations.ORDER_DATASET, data=np.asarray(rows, np.int64))


def extract_folder(
    videos: str | os.PathLike[str],
    out: str | os.PathLike[str],
    extractor: AveExtractor,
    *,
    log: Callable[[str], None] | None = None,
) -> extract.ExtractionSummary:
  """Extracts every video of `videos` into AVE's layout under `out` (the module docstring).

  A video that fails (unreadable, no video stream, no audio track) is recorded and the others go on.

  Raises:
    InputError: `videos` does not exist or holds no video; no video could be extracted.
  """
  import h5py  # pylint: disable=g-import-not-at-top  (only when writing)

  paths = extract.list_videos(videos)
  out = os.path.abspath(os.path.expanduser(os.fspath(out)))
  os.makedirs(out, exist_ok=True)
  log = log or (lambda message: print(message, file=sys.stderr))
  summary = extract.ExtractionSummary(out=out, random_weights=extractor.random)
  manifest: dict[str, Any] = {
      "layout": "ave",
      "weights": "random" if extractor.random else "pretrained",
      "network": extractor.network,
      "preprocessing": extractor.preprocessing,
      "videos": {},
  }
  if extractor.random:
    manifest["note"] = weights_lib.RANDOM_WEIGHTS_NOTE
  tmp = {
      name: os.path.join(out, f"{file}.tmp-{os.getpid()}")
      for name, file in ave_features.FILES.items()
  }
  files = {name: h5py.File(path, "w") for name, path in tmp.items()}
  datasets = {
      name: files[name].create_dataset(
          ave_features.DATASET,
          shape=(0, *shape),
          maxshape=(None, *shape),
          dtype=DTYPE,
          chunks=(1, *shape),
      )
      for name, shape in ave_features.SHAPES.items()
  }
  clips, start = [], time.perf_counter()
  progress = reporting.VideoProgress(len(paths), log)
  try:
    for path in paths:
      name = os.path.basename(path)
      stem = os.path.splitext(name)[0]
      try:
        video = video_features(path, extractor, require_audio=True)
      except InputError as error:
        manifest["videos"][name] = {"status": "failed", "reason": str(error)}
        summary.outcomes[name] = str(error)
        log(f"skipped {name}: {error}")
        progress.done(name, "failed")
        continue
      names = extract.clip_names(stem, video.num_windows, ave_frames.SECONDS)
      record = []
      for k, clip in enumerate(names):
        for key, dataset in datasets.items():
          dataset.resize(len(clips) + 1, axis=0)
          dataset[len(clips)] = video.features[key][k].astype(DTYPE)
        record.append(
            {
                "row": len(clips),
                "clip": clip,
                "start_s": k * ave_frames.SECONDS,
                "valid_seconds": int(video.segment_mask[k].sum()),
            }
        )
        clips.append(clip)
      manifest["videos"][name] = {
          "status": "done",
          "duration_s": video.duration_s,
          "clips": record,
      }
      summary.outcomes[name] = "done"
      summary.clips_written += len(names)
      progress.done(name, reporting.counted(len(names), "clip"))
  finally:
    for f in files.values():
      f.close()
  summary.seconds = time.perf_counter() - start
  if not clips:
    for path in tmp.values():
      os.remove(path)
    raise InputError(
        f"no video of {os.fspath(videos)!r} could be extracted: "
        + "; ".join(f"{n}: {why}" for n, why in summary.failures.items())
    )
  for name, path in tmp.items():
    os.replace(path, os.path.join(out, ave_features.FILES[name]))
  with open(os.path.join(out, CLIPS_TXT), "w") as f:
    f.write("".join(f"{clip}\n" for clip in clips))
  with open(os.path.join(out, TEMPLATE), "w") as f:
    f.write("&".join(annotations.HEADER) + "\n")
    f.write("".join(f"CATEGORY&{clip}&unlabelled&START&END\n" for clip in clips))
  _write_order(os.path.join(out, annotations.ORDER_FILES["test"]), np.arange(len(clips)))
  for split in ("train", "val"):
    _write_order(os.path.join(out, annotations.ORDER_FILES[split]), np.zeros(0, np.int64))
  with open(os.path.join(out, MANIFEST), "w") as f:
    json.dump(manifest, f, indent=1)
  return summary
