"""Timeline pictures of clips' events: one row per class that occurs, audio and visual bars, the audio-visual
overlap hatched, the ground truth beside the prediction when given.

  timelines.plot_timelines("timeline.png", [{"clip": "id", "events": events, "truth": truth_events}])

The file's extension picks the format: .png, .pdf or .svg (`PLOT_FORMATS`); others are refused in
one line.

A clip may carry "thumbnails": (start_s, end_s, uint8 `[h, w, 3]` image) triples drawn as a strip above its
prediction (`avvp_jax.video.parse` gives one per 10-s window of a video). Clips longer than 10 s get wider
panels (up to 16 in) and sparser second ticks.

Events are the dicts of `avvp_jax.tasks.llp.events` ("modality", "label", "onset", "offset"). Drawing needs matplotlib
and uses its Agg backend; `timeline_figure_size` gives a picture's size in pixels without drawing.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

from avvp_jax.tasks.llp import events as events_lib
from avvp_jax.tasks.llp import annotations
from avvp_jax.errors import InputError

AUDIO_COLOR = "#1f77b4"  # blue
VISUAL_COLOR = "#ff7f0e"  # orange
OVERLAP_COLOR = "#2ca02c"  # green outline, hatched: audio-visual
PLOT_DPI = 100
_LABEL_WIDTH_IN = 1.9  # class names on the left of each clip's first panel
_PANEL_WIDTH_IN = 5.0
_HEADER_IN = 0.55  # figure title and legend
_CLIP_TITLE_IN = 0.35  # per clip, above its panels: the panel titles
_CLIP_FOOTER_IN = 0.5  # per clip, below its panels: the seconds axis
_ROW_IN = 0.32  # per class row
_THUMBNAILS_IN = 0.75  # per clip with thumbnails: the strip above its prediction panel
THUMBNAIL_HEIGHT_IN = 0.9 * _THUMBNAILS_IN  # a thumbnail's drawn height
_MAX_PANEL_WIDTH_IN = 16.0
_TICK_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600)  # seconds between x ticks


TRACKS = ("audio", "visual", "audio-visual")  # LLP's event modalities; AVE has the last only
PLOT_FORMATS = ("png", "pdf", "svg")  # picture formats by file extension


def plot_format(path: str | os.PathLike[str], flag: str = "--plot") -> str:
  """The picture format of `path` by its extension ("png", "pdf" or "svg"); others are an
  InputError."""
  extension = os.path.splitext(os.fspath(path))[1].lower().lstrip(".")
  if extension not in PLOT_FORMATS:
    shown = f"extension .{extension}" if extension else "no extension"
    raise InputError(
        f"{flag} {os.fspath(path)!r} has {shown}: timelines are written as "
        f"{', '.join('.' + f for f in PLOT_FORMATS)} (chosen by the file's extension)."
    )
  return extension


def _timeline_rows(clip: Mapping[str, Any]) -> list[str]:
  """Classes shown for a clip: those in its predicted or true events, in class order (may be empty); the
  clip's "classes" (e.g. AVE's 28) or LLP's."""
  labels = {e["label"] for e in clip["events"]} | {e["label"] for e in (clip.get("truth") or [])}
  return [c for c in clip.get("classes") or annotations.CLASSES if c in labels]


def panel_width_in(num_seconds: int) -> float:
  """A panel's width: 5 in for a 10-s clip, a quarter inch more per further second, at most 16 in."""
  return min(
      _MAX_PANEL_WIDTH_IN, _PANEL_WIDTH_IN + 0.25 * max(0, num_seconds - annotations.NUM_SECONDS)
  )


def _tick_step(num_seconds: int) -> int:
  """Seconds between x ticks: every second up to 16 s, then the first step giving at most 16 ticks."""
  return next((step for step in _TICK_STEPS if num_seconds / step <= 16), _TICK_STEPS[-1])


def _block_in(clip: Mapping[str, Any]) -> float:
  """The height of one clip's block: title, thumbnails (if any), rows, seconds axis."""
  strip = _THUMBNAILS_IN if clip.get("thumbnails") else 0.0
  return _CLIP_TITLE_IN + strip + _ROW_IN * max(1, len(_timeline_rows(clip))) + _CLIP_FOOTER_IN


def timeline_figure_size(
    clips: Sequence[Mapping[str, Any]], num_seconds: int = annotations.NUM_SECONDS
) -> tuple[int, int]:
  """(width, height) in pixels of `plot_timelines(clips, num_seconds=...)`'s picture."""
  with_truth = any(clip.get("truth") is not None for clip in clips)
  width = _LABEL_WIDTH_IN + panel_width_in(num_seconds) * (2 if with_truth else 1)
  height = _HEADER_IN + sum(_block_in(c) for c in clips)
  return int(round(width * PLOT_DPI)), int(round(height * PLOT_DPI))


def _draw_events(ax, events: Sequence[events_lib.Event], rows: list[str], num_seconds: int) -> None:
  """Draws one panel: per class row, the audio bar on top, the visual bar below, audio-visual hatched."""
  # matplotlib only when drawing: importing this module (e.g. for `timeline_figure_size`) stays light.
  from matplotlib import patches  # pylint: disable=g-import-not-at-top  (matplotlib only when drawing)

  index = {label: i for i, label in enumerate(rows)}
  for event in events:
    y = len(rows) - 1 - index[event["label"]]  # first class at the top
    onset, width = event["onset"], event["offset"] - event["onset"]
    if event["modality"] == "audio":
      ax.add_patch(
          patches.Rectangle((onset, y + 0.52), width, 0.38, facecolor=AUDIO_COLOR, edgecolor="none")
      )
    elif event["modality"] == "visual":
      ax.add_patch(
          patches.Rectangle(
              (onset, y + 0.10), width, 0.38, facecolor=VISUAL_COLOR, edgecolor="none"
          )
      )
    else:
      ax.add_patch(
          patches.Rectangle(
              (onset, y + 0.05),
              width,
              0.90,
              facecolor="none",
              edgecolor=OVERLAP_COLOR,
              hatch="///",
              linewidth=1.5,
          )
      )
  ax.set_xlim(0, num_seconds)
  ax.set_ylim(0, max(1, len(rows)))
  ax.set_xticks(range(0, num_seconds + 1, _tick_step(num_seconds)))
  ax.set_yticks([len(rows) - 1 - i + 0.5 for i in range(len(rows))])
  ax.set_yticklabels([])
  ax.grid(axis="x", color="#dddddd", linewidth=0.6)
  ax.set_axisbelow(True)
  for y in range(1, len(rows)):
    ax.axhline(y, color="#bbbbbb", linewidth=0.6)
  ax.tick_params(labelsize=8)


def plot_timelines(
    path: str | os.PathLike[str],
    clips: Sequence[Mapping[str, Any]],
    *,
    title: str | None = None,
    num_seconds: int = annotations.NUM_SECONDS,
    tracks: Sequence[str] = TRACKS,
) -> tuple[int, int]:
  """Writes a picture of clips' event timelines; returns its (width, height) in pixels.

  Args:
    path: the file to write (parent folders are created); its extension picks the format: .png,
      .pdf or .svg (`plot_format`; anything else is an InputError, raised before drawing).
    clips: per clip a mapping with "clip" (its id, the panel title), "events" (predicted events) and
      optionally "truth" (ground-truth events, e.g. `events.extract_events` of the dense labels) or None,
      and "thumbnails" ((start_s, end_s, image) triples drawn above the prediction), and "classes" (the
      row order and vocabulary; default LLP's 25 classes).
    title: the figure title.
    num_seconds: the clips' length (the x axis).
    tracks: the event modalities the legend explains: LLP's three, or ("audio-visual",) for AVE's one.

  Returns:
    (width, height) in pixels, `timeline_figure_size(clips, num_seconds)`.
  """
  # matplotlib only when drawing: importing this module (e.g. for `timeline_figure_size`) stays light.
  import matplotlib  # pylint: disable=g-import-not-at-top  (matplotlib only when drawing)

  matplotlib.use("Agg")
  from matplotlib import patches  # pylint: disable=g-import-not-at-top  (matplotlib only when drawing)
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top  (matplotlib only when drawing)

  image_format = plot_format(path, "plot_timelines path")
  if not clips:
    raise InputError("plot_timelines got no clips: pass at least one clip to draw.")
  with_truth = any(clip.get("truth") is not None for clip in clips)
  width_px, height_px = timeline_figure_size(clips, num_seconds)
  fig = plt.figure(figsize=(width_px / PLOT_DPI, height_px / PLOT_DPI), dpi=PLOT_DPI)
  try:
    width_in, height_in = width_px / PLOT_DPI, height_px / PLOT_DPI
    panel_in = panel_width_in(num_seconds)
    panel_w = panel_in / width_in
    top = 1.0 - _HEADER_IN / height_in
    for clip in clips:
      rows = _timeline_rows(clip)
      block_in = _block_in(clip)
      strip_in = _THUMBNAILS_IN if clip.get("thumbnails") else 0.0
      panel_h = _ROW_IN * max(1, len(rows)) / height_in
      bottom = top - ((_CLIP_TITLE_IN + strip_in) / height_in) - panel_h
      if strip_in:
        strip = fig.add_axes(
            (
                _LABEL_WIDTH_IN / width_in + 0.01,
                bottom + panel_h,
                panel_w - 0.03,
                THUMBNAIL_HEIGHT_IN / height_in,
            )
        )
        for start_s, end_s, image in clip["thumbnails"]:
          strip.imshow(image, extent=(start_s, end_s, 0, 1), aspect="auto", interpolation="nearest")
        strip.set_xlim(0, num_seconds)
        strip.set_ylim(0, 1)
        strip.set_axis_off()
      panels = [("prediction", clip["events"])]
      if with_truth:
        truth = clip.get("truth")
        panels.append(
            ("ground truth" if truth is not None else "ground truth (not available)", truth or [])
        )
      for column, (name, events) in enumerate(panels):
        left = (_LABEL_WIDTH_IN + column * panel_in) / width_in + 0.01
        ax = fig.add_axes((left, bottom, panel_w - 0.03, panel_h))
        _draw_events(ax, events, rows, num_seconds)
        if strip_in and column == 0:  # the title goes above the thumbnails
          fig.text(
              left, bottom + panel_h + strip_in / height_in, f"{clip['clip']}: {name}", fontsize=9
          )
        else:
          ax.set_title(f"{clip['clip']}: {name}", fontsize=9, loc="left")
        if column == 0:
          ax.set_yticklabels([r.replace("_", " ") for r in rows], fontsize=8)
        ax.set_xlabel("seconds", fontsize=8, labelpad=1)
        if not rows:
          ax.text(
              num_seconds / 2,
              0.5,
              "no events",
              ha="center",
              va="center",
              fontsize=8,
              color="#777777",
          )
      top -= block_in / height_in
    legend = {
        "audio": patches.Patch(facecolor=AUDIO_COLOR, label="audio"),
        "visual": patches.Patch(facecolor=VISUAL_COLOR, label="visual"),
        "audio-visual": patches.Patch(
            facecolor="none",
            edgecolor=OVERLAP_COLOR,
            hatch="///",
            label="audio-visual (both)" if len(tracks) > 1 else "audio-visual event",
        ),
    }
    handles = [legend[track] for track in tracks]
    fig.legend(
        handles=handles,
        loc="upper right",
        ncol=len(handles),
        fontsize=8,
        frameon=False,
        bbox_to_anchor=(1.0 - 0.02, 1.0 - 0.26 / height_in),
    )
    if title:
      fig.suptitle(title, x=0.02, y=1.0 - 0.08 / height_in, ha="left", va="top", fontsize=10)
    os.makedirs(os.path.dirname(os.path.abspath(os.fspath(path))), exist_ok=True)
    fig.savefig(os.fspath(path), dpi=PLOT_DPI, format=image_format)
  finally:
    plt.close(fig)
  return width_px, height_px
