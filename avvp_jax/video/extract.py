"""Official-layout LLP features of videos: VGGish audio, ResNet-152 frames, R(2+1)D-18 motion per 10-s window.

`FeatureExtractor` holds the three Flax networks (pretrained from the official files, or random) and turns
one decoded window (`avvp_jax.video.decode`) into the three arrays of the official layout
(`avvp_jax.tasks.llp.features.LAYOUTS["official"]`):

  audio   [10, 128]   VGGish of the window's 10 log-mel examples (`vggish.waveform_to_examples`)
  frames  [80, 2048]  ResNet-152 of the 80 selected frames (`resnet.resnet_transform`)
  motion  [10, 512]   R(2+1)D-18 of the 80 frames as 10 clips of 8 (`r2plus1d.r2plus1d_transform`), as the
                      official `scripts/extract_3D_feat.py` groups them (frame i goes to clip i // 8)

`extract_folder` is what `launch/extract_features.py` does: every video of a folder into a features folder
that `launch/train.py --config.data.features_dir=...` and `launch/parse.py --features=...` read, resumable
(finished clips are skipped, each file is written atomically), with a summary of the videos that failed.

A video longer than one window gives one clip per window, `<stem>__<start>_<end>` (seconds of the video,
e.g. `walk__10_20`); a video of one window (up to 10 s) gives the clip `<stem>`, as LLP's files are named.
`extraction.json` in the output folder records, per video, its clips, their valid seconds, and the weights
the features came from.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from typing import Any, Callable, Mapping

from flax import linen as nn

import jax
import jax.numpy as jnp
import numpy as np

from avvp_jax.tasks.llp import features as features_lib
from avvp_jax import reporting
from avvp_jax.errors import InputError
from avvp_jax.video import decode
from avvp_jax.video import r2plus1d
from avvp_jax.video import resnet
from avvp_jax.video import vggish
from avvp_jax.video import weights as weights_lib

LAYOUT = features_lib.LAYOUTS["official"]  # modality -> (sub-folder, per-clip shape)
CLIPS_PER_WINDOW = 10  # VGGish examples and R(2+1)D-18 clips of 8 frames per 10-s window
MANIFEST = "extraction.json"
# The manifest is rewritten at most this often during a run, and at its end (or stop). A video done but
# not yet recorded when a run is killed is extracted again by the next one (its files are atomic).
MANIFEST_EVERY_S = 30.0
THUMBNAIL_FRAMES = (0, 20, 40, 60)  # of a window's 80: at 0, 2.5, 5 and 7.5 s
VIDEO_EXTENSIONS = (
    ".mp4",
    ".mkv",
    ".webm",
    ".avi",
    ".mov",
    ".m4v",
    ".flv",
    ".mpg",
    ".mpeg",
    ".3gp",
)

# modality -> the network's module (each: WEIGHT_FILE, init_params, params_from_state_dict, embed).
NETWORKS = {"audio": vggish, "frames": resnet, "motion": r2plus1d}


def _ensure_size(x: np.ndarray, size: int) -> tuple[np.ndarray, int]:
  """Pads `x` on axis 0 to `size` rows (one shape per jitted call); returns it and the real row count."""
  n = x.shape[0]
  if n == size:
    return x, n
  return np.concatenate([x, np.zeros((size - n, *x.shape[1:]), x.dtype)]), n


def window_vggish(params: Any, waveform: np.ndarray) -> np.ndarray:
  """VGGish embeddings of one 10-s window, LLP's way (and AVE's): `[160000]` float32 16-kHz mono ->
  `[10, 128]` float32, one per second (a short window's missing seconds zero-padded)."""
  examples = vggish.waveform_to_examples(
      np.asarray(waveform, np.float32), alignment=vggish.LLP_ALIGNMENT
  )
  examples, _ = _ensure_size(np.asarray(examples, np.float32), CLIPS_PER_WINDOW)
  out = vggish.embed(params, jnp.asarray(examples[:CLIPS_PER_WINDOW]))
  return np.asarray(out, np.float32)


class FeatureExtractor:
  """The three official-layout feature networks, ready to embed decoded windows.

  Attributes:
    weights: "pretrained" (the official files) or "random" (random networks; every output says so).
    params: modality -> the network's Flax params.
    sources: modality -> where its params came from (a file path, or the random note).
  """

  def __init__(
      self,
      weights: str = "pretrained",
      *,
      weights_dir: str | os.PathLike[str] | None = None,
      download: bool = True,
      frame_batch: int = 80,
      seed: int = 0,
      modules: Mapping[str, nn.Module] | None = None,
  ):
    """Loads (or randomly initialises) the three networks.

    Args:
      weights: "pretrained" or "random".
      weights_dir: a folder holding the weight files (offline hosts); None: torch's cache, downloading
        what is missing (see `avvp_jax.video.weights`).
      download: whether a missing file may be downloaded.
      frame_batch: frames per ResNet-152 call (lower it on a small accelerator or on a CPU); the 80
        frames of a window go through in ceil(80 / frame_batch) calls of one compiled shape.
      seed: the random networks' seed.
      modules: other depths of the visual networks for random smoke runs ({"frames": resnet.ResNet(
        stages=...), "motion": r2plus1d.R2Plus1D(stages=...)}; same output widths); only with
        `weights="random"`: the official files fit the official depths only.

    Raises:
      InputError: an unknown `weights`, a missing or unreadable weight file, `modules` with pretrained
        weights.
    """
    weights_lib.check_mode(weights)
    if frame_batch < 1:
      raise InputError(f"frame_batch={frame_batch} must be positive.")
    modules = dict(modules or {})
    if set(modules) - {"frames", "motion"}:
      raise InputError(f"modules may replace 'frames' and 'motion' only, got {sorted(modules)}.")
    if modules and weights != "random":
      raise InputError("other network depths (modules=) take random weights only.")
    self.weights = weights
    self.frame_batch = int(frame_batch)
    self.modules = {
        "frames": modules.get("frames", resnet.MODEL),
        "motion": modules.get("motion", r2plus1d.MODEL),
    }
    self.params, self.sources = {}, {}
    keys = jax.random.split(jax.random.key(seed), len(NETWORKS))
    for key, (modality, network) in zip(keys, NETWORKS.items()):
      module = {} if modality == "audio" else {"module": self.modules[modality]}
      if weights == "random":
        self.params[modality] = network.init_params(key, **module)
        self.sources[modality] = weights_lib.RANDOM_WEIGHTS_NOTE
      else:
        path = weights_lib.find(network.WEIGHT_FILE, weights_dir, download=download)
        self.params[modality] = network.params_from_state_dict(
            weights_lib.load_state_dict(path), **module
        )
        self.sources[modality] = path

  @property
  def random(self) -> bool:
    return self.weights == "random"

  def audio(self, waveform: np.ndarray) -> np.ndarray:
    """VGGish features of one window: `[160000]` float32 16-kHz mono -> `[10, 128]` float32."""
    return window_vggish(self.params["audio"], waveform)

  def frames(self, frames: np.ndarray) -> np.ndarray:
    """ResNet-152 features of one window's frames: uint8 `[80, H, W, 3]` -> `[80, 2048]` float32."""
    images = resnet.resnet_transform(frames)  # [80, 224, 224, 3]
    outputs = []
    for start in range(0, images.shape[0], self.frame_batch):
      chunk, n = _ensure_size(images[start : start + self.frame_batch], self.frame_batch)
      embedded = resnet.embed(self.params["frames"], chunk, module=self.modules["frames"])
      outputs.append(np.asarray(embedded)[:n])
    return np.concatenate(outputs).astype(np.float32)

  def motion(self, frames: np.ndarray) -> np.ndarray:
    """R(2+1)D-18 features of one window's frames: uint8 `[80, H, W, 3]` -> `[10, 512]` float32."""
    clips = r2plus1d.clips_from_frames(r2plus1d.r2plus1d_transform(frames))  # [10, 8, 112, 112, 3]
    embedded = r2plus1d.embed(self.params["motion"], clips, module=self.modules["motion"])
    return np.asarray(embedded, np.float32)

  def window(self, frames: np.ndarray, waveform: np.ndarray | None) -> dict[str, np.ndarray | None]:
    """All three features of one window; "audio" is None when `waveform` is (no audio track)."""
    return {
        "audio": None if waveform is None else self.audio(waveform),
        "frames": self.frames(frames),
        "motion": self.motion(frames),
    }


# --- a folder of videos ---------------------------------------------------------------------------


def clip_names(stem: str, num_windows: int, window_seconds: int) -> list[str]:
  """The clip ids of a video's windows: `[stem]` for one window, else `stem__<start>_<end>` per window."""
  if num_windows == 1:
    return [stem]
  return [f"{stem}__{k * window_seconds}_{(k + 1) * window_seconds}" for k in range(num_windows)]


def list_videos(videos: str | os.PathLike[str]) -> list[str]:
  """The video files of a folder (by extension, sorted), the one file given, or the files of a comma-separated
  list (in its order).

  Raises:
    InputError: the path does not exist, or the folder holds no video file; a listed file does not exist.
  """
  videos = os.path.expanduser(os.fspath(videos))
  if os.path.isfile(videos):
    return [videos]
  if "," in videos:
    listed = [os.path.expanduser(v.strip()) for v in videos.split(",") if v.strip()]
    missing = [v for v in listed if not os.path.isfile(v)]
    if missing or not listed:
      raise InputError(
          f"--videos lists {', '.join(map(repr, missing)) or 'no file'}, which "
          f"{'is' if len(missing) == 1 else 'are'} not a video file: list existing files, comma-separated."
      )
    return listed
  if not os.path.isdir(videos):
    raise InputError(f"--videos {videos!r} does not exist: pass a folder of videos or one video.")
  found = sorted(
      os.path.join(videos, name)
      for name in os.listdir(videos)
      if name.lower().endswith(VIDEO_EXTENSIONS) and os.path.isfile(os.path.join(videos, name))
  )
  if not found:
    raise InputError(
        f"--videos {videos!r} holds no video file (looked for {', '.join(VIDEO_EXTENSIONS)})."
    )
  return found


def _save_atomically(path: str, array: np.ndarray) -> None:
  tmp = f"{path}.tmp-{os.getpid()}.npy"
  np.save(tmp, array)
  os.replace(tmp, path)


def _write_json_atomically(path: str, record: Any) -> None:
  tmp = f"{path}.tmp-{os.getpid()}"
  with open(tmp, "w") as f:
    json.dump(record, f, indent=1)
  os.replace(tmp, path)


def _clip_paths(out: str, clip: str) -> dict[str, str]:
  return {
      modality: os.path.join(out, folder, f"{clip}.npy") for modality, (folder, _) in LAYOUT.items()
  }


@dataclasses.dataclass
class ExtractionSummary:
  """What `extract_folder` did: per video "done" / "skipped" (already extracted) / the failure's reason."""

  out: str
  outcomes: dict[str, str] = dataclasses.field(default_factory=dict)
  clips_written: int = 0
  seconds: float = 0.0
  random_weights: bool = False

  @property
  def failures(self) -> dict[str, str]:
    return {v: why for v, why in self.outcomes.items() if why not in ("done", "skipped")}

  def describe(self) -> str:
    done = sum(why == "done" for why in self.outcomes.values())
    skipped = sum(why == "skipped" for why in self.outcomes.values())
    rate = self.clips_written / self.seconds if self.seconds > 0 else 0.0
    clips = self.clips_written
    line = (
        f"{reporting.counted(done, 'video')} extracted ({reporting.counted(clips, 'clip')}, {rate:.2f} clips/s), {skipped} "
        f"already done, {len(self.failures)} failed; features in {self.out}"
    )
    if self.random_weights:
      line += f" [{weights_lib.RANDOM_WEIGHTS_NOTE}]"
    return line


def extract_folder(
    videos: str | os.PathLike[str],
    out: str | os.PathLike[str],
    extractor: FeatureExtractor,
    *,
    window_seconds: int = decode.WINDOW_SECONDS,
    progress: bool | None = None,
    log: Callable[[str], None] | None = None,
) -> ExtractionSummary:
  """Extracts every video of `videos` into the official layout under `out` (see the module docstring).

  A video whose clips all exist is skipped. One that fails (unreadable, no video stream, no audio track,
  no frames) is recorded in the summary and in `extraction.json`, and the others go on.

  Returns:
    The summary (`describe()` is one line for the log).

  Raises:
    InputError: `videos` does not exist or holds no video.
  """
  import tqdm  # pylint: disable=g-import-not-at-top  (tqdm only for a folder run)

  paths = list_videos(videos)
  out = os.path.abspath(os.path.expanduser(os.fspath(out)))
  for folder, _ in LAYOUT.values():
    os.makedirs(os.path.join(out, folder), exist_ok=True)
  manifest_path = os.path.join(out, MANIFEST)
  manifest = {"layout": "official", "videos": {}}
  if os.path.isfile(manifest_path):
    with open(manifest_path) as f:
      manifest = json.load(f)
  weights_record = "random" if extractor.random else "pretrained"
  if manifest.get("weights", weights_record) != weights_record:
    raise InputError(
        f"{out} holds features made with {manifest['weights']} weights; these are {weights_record}: "
        "use another --out folder."
    )
  manifest["weights"] = weights_record
  if extractor.random:
    manifest["note"] = weights_lib.RANDOM_WEIGHTS_NOTE
  summary = ExtractionSummary(out=out, random_weights=extractor.random)
  log = log or (lambda message: print(message, file=sys.stderr))
  start = last_write = time.perf_counter()
  bar = tqdm.tqdm(
      total=len(paths),
      unit="video",
      disable=None if progress is None else not progress,
      file=sys.stderr,
      dynamic_ncols=True,
  )
  # Off a terminal (no bar), one line per video with an ETA.
  progress = reporting.VideoProgress(len(paths), log) if bar.disable else None
  try:
    for path in paths:
      name = os.path.basename(path)
      stem = os.path.splitext(name)[0]
      recorded = manifest["videos"].get(name)
      if (
          recorded
          and recorded.get("status") == "done"
          and all(
              os.path.isfile(p)
              for clip in recorded["clips"]
              for p in _clip_paths(out, clip["clip"]).values()
          )
      ):
        summary.outcomes[name] = "skipped"
        bar.update(1)
        if progress is not None:
          progress.total -= 1  # done in an earlier run: no time, no line
        continue
      try:
        record = _extract_video(path, stem, out, extractor, window_seconds)
      except InputError as error:
        record = {"status": "failed", "reason": str(error)}
        log(f"skipped {name}: {error}")
      except Exception as error:  # pylint: disable=broad-except  (one bad video never stops the rest)
        reason = f"{path}: unexpected {type(error).__name__} while extracting: {error}"
        record = {"status": "failed", "reason": " ".join(reason.split())}
        log(f"skipped {name}: {record['reason']}")
      manifest["videos"][name] = record
      if time.perf_counter() - last_write >= MANIFEST_EVERY_S:  # not per video: O(videos^2) bytes
        _write_json_atomically(manifest_path, manifest)
        last_write = time.perf_counter()
      if record["status"] == "done":
        summary.outcomes[name] = "done"
        summary.clips_written += len(record["clips"])
      else:
        summary.outcomes[name] = record["reason"]
      summary.seconds = time.perf_counter() - start
      bar.set_postfix(clips_per_s=f"{summary.clips_written / max(summary.seconds, 1e-9):.2f}")
      bar.update(1)
      if progress is not None:
        done = record["status"] == "done"
        progress.done(name, reporting.counted(len(record["clips"]), "clip") if done else "failed")
  finally:
    bar.close()
    _write_json_atomically(manifest_path, manifest)  # also when stopped: what is done stays done
  summary.seconds = time.perf_counter() - start
  return summary


@dataclasses.dataclass(frozen=True)
class VideoFeatures:
  """The official-layout features of every window of one video (`video_features`).

  Attributes:
    path: the video file.
    duration_s: its duration in seconds.
    has_audio: whether it has an audio track (without one, "audio" holds VGGish of silence).
    segment_mask: bool `[K, 10]`: second s of window k lies inside the video.
    padded: the last window runs past the video's end.
    features: "audio" `[K, 10, 128]`, "frames" `[K, 80, 2048]`, "motion" `[K, 10, 512]`, float32.
    thumbnails: small RGB frames for timelines: (time in seconds, uint8 `[h, w, 3]`), four per window
      (its frames 0, 20, 40 and 60 of 80).
  """

  path: str
  duration_s: float
  has_audio: bool
  segment_mask: np.ndarray
  padded: bool
  features: dict[str, np.ndarray]
  thumbnails: list[tuple[float, np.ndarray]]

  @property
  def num_windows(self) -> int:
    return int(self.segment_mask.shape[0])


def _thumbnail(frame: np.ndarray, height: int = 72) -> np.ndarray:
  """A small copy of one uint8 `[H, W, 3]` frame (`height` rows, aspect kept; nearest pixels)."""
  rows = np.linspace(0, frame.shape[0] - 1, height).round().astype(int)
  width = max(1, round(frame.shape[1] * height / frame.shape[0]))
  cols = np.linspace(0, frame.shape[1] - 1, width).round().astype(int)
  return frame[rows][:, cols]


def video_features(
    path: str,
    extractor: FeatureExtractor,
    *,
    window_seconds: int = decode.WINDOW_SECONDS,
    require_audio: bool = False,
) -> VideoFeatures:
  """Decodes one video window by window (`decode.iter_windows`: one window's frames in memory at a time)
  and extracts each window's three features.

  Args:
    path: the video file.
    extractor: the networks.
    window_seconds: 10.
    require_audio: a video without an audio track is an InputError (else VGGish of silence stands in).

  Raises:
    InputError: a bad video (`decode.iter_windows`), or no audio track with `require_audio`.
  """
  info = decode.probe(path)
  if require_audio and not info.has_audio:
    raise InputError(f"{path} has no audio track: the official layout needs VGGish audio features.")
  silence = np.zeros(decode.SAMPLE_RATE * window_seconds, np.float32)
  per_window, masks, thumbnails, last = [], [], [], None
  for window in decode.iter_windows(path, window_seconds=window_seconds):
    waveform = silence if window.waveform is None else window.waveform
    per_window.append(extractor.window(window.frames, waveform))
    masks.append(window.segment_mask)
    thumbnails.extend(
        (float(window.frame_indices[i]) / decode.FPS, _thumbnail(window.frames[i]))
        for i in THUMBNAIL_FRAMES
        if window.frame_indices[i] / decode.FPS
        < window.index * window_seconds + window.segment_mask.sum()
    )
    last = window
  segment_mask = np.stack(masks)
  return VideoFeatures(
      path=path,
      duration_s=float(info.duration_s),
      has_audio=bool(info.has_audio),
      segment_mask=segment_mask,
      padded=bool(last.num_frames < window_seconds * decode.FPS or not segment_mask.all()),
      features={key: np.stack([w[key] for w in per_window]) for key in LAYOUT},
      thumbnails=thumbnails,
  )


def _extract_video(
    path: str, stem: str, out: str, extractor: FeatureExtractor, window_seconds: int
) -> dict[str, Any]:
  """Decodes and extracts one video, writing each clip's three files; returns its manifest record."""
  video = video_features(path, extractor, window_seconds=window_seconds, require_audio=True)
  names = clip_names(stem, video.num_windows, window_seconds)
  clips = []
  for k, clip_id in enumerate(names):
    for modality, target in _clip_paths(out, clip_id).items():
      _save_atomically(target, video.features[modality][k])
    clips.append(
        {
            "clip": clip_id,
            "start_s": k * window_seconds,
            "valid_seconds": int(np.sum(video.segment_mask[k])),
        }
    )
  return {
      "status": "done",
      "duration_s": video.duration_s,
      "num_windows": video.num_windows,
      "padded": video.padded,
      "clips": clips,
  }
