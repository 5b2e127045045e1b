"""Timeline pictures of clips' events: one row per class that occurs, audio and visual bars, the audio-visual
overlap hatched, the ground truth beside the prediction when given.

  timelines.plot_timelines("timeline.png", [{"clip": "id", "events": events, "truth": truth_events}])

Events are the dicts of `avvp_jax.events` ("modality", "label", "onset", "offset"). Drawing needs matplotlib
and uses its Agg backend; `timeline_figure_size` gives a picture's size in pixels without drawing.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

from avvp_jax import events as events_lib
from avvp_jax.data import annotations
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


def _timeline_rows(clip: Mapping[str, Any]) -> list[str]:
  """Classes shown for a clip: those in its predicted or true events, in class order (may be empty)."""
  labels = {e["label"] for e in clip["events"]} | {e["label"] for e in (clip.get("truth") or [])}
  return [c for c in annotations.CLASSES if c in labels]


def timeline_figure_size(clips: Sequence[Mapping[str, Any]]) -> tuple[int, int]:
  """(width, height) in pixels of `plot_timelines(clips)`'s picture."""
  with_truth = any(clip.get("truth") is not None for clip in clips)
  width = _LABEL_WIDTH_IN + _PANEL_WIDTH_IN * (2 if with_truth else 1)
  height = _HEADER_IN + sum(
      _CLIP_TITLE_IN + _CLIP_FOOTER_IN + _ROW_IN * max(1, len(_timeline_rows(c))) for c in clips
  )
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
  ax.set_xticks(range(num_seconds + 1))
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
) -> tuple[int, int]:
  """Writes a PNG of clips' event timelines; returns its (width, height) in pixels.

  Args:
    path: the PNG file to write (parent folders are created).
    clips: per clip a mapping with "clip" (its id, the panel title), "events" (predicted events) and
      optionally "truth" (ground-truth events, e.g. `events.extract_events` of the dense labels) or None.
    title: the figure title.
    num_seconds: the clips' length (the x axis).

  Returns:
    (width, height) in pixels, `timeline_figure_size(clips)`.
  """
  # matplotlib only when drawing: importing this module (e.g. for `timeline_figure_size`) stays light.
  import matplotlib  # pylint: disable=g-import-not-at-top  (matplotlib only when drawing)

  matplotlib.use("Agg")
  from matplotlib import patches  # pylint: disable=g-import-not-at-top  (matplotlib only when drawing)
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top  (matplotlib only when drawing)

  if not clips:
    raise InputError("plot_timelines got no clips: pass at least one clip to draw.")
  with_truth = any(clip.get("truth") is not None for clip in clips)
  width_px, height_px = timeline_figure_size(clips)
  fig = plt.figure(figsize=(width_px / PLOT_DPI, height_px / PLOT_DPI), dpi=PLOT_DPI)
  try:
    width_in, height_in = width_px / PLOT_DPI, height_px / PLOT_DPI
    panel_w = _PANEL_WIDTH_IN / width_in
    top = 1.0 - _HEADER_IN / height_in
    for clip in clips:
      rows = _timeline_rows(clip)
      block_in = _CLIP_TITLE_IN + _ROW_IN * max(1, len(rows)) + _CLIP_FOOTER_IN
      panel_h = _ROW_IN * max(1, len(rows)) / height_in
      bottom = top - (_CLIP_TITLE_IN / height_in) - panel_h
      panels = [("prediction", clip["events"])]
      if with_truth:
        truth = clip.get("truth")
        panels.append(
            ("ground truth" if truth is not None else "ground truth (not available)", truth or [])
        )
      for column, (name, events) in enumerate(panels):
        left = (_LABEL_WIDTH_IN + column * _PANEL_WIDTH_IN) / width_in + 0.01
        ax = fig.add_axes((left, bottom, panel_w - 0.03, panel_h))
        _draw_events(ax, events, rows, num_seconds)
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
    handles = [
        patches.Patch(facecolor=AUDIO_COLOR, label="audio"),
        patches.Patch(facecolor=VISUAL_COLOR, label="visual"),
        patches.Patch(
            facecolor="none", edgecolor=OVERLAP_COLOR, hatch="///", label="audio-visual (both)"
        ),
    ]
    fig.legend(
        handles=handles,
        loc="upper right",
        ncol=3,
        fontsize=8,
        frameon=False,
        bbox_to_anchor=(1.0 - 0.02, 1.0 - 0.26 / height_in),
    )
    if title:
      fig.suptitle(title, x=0.02, y=1.0 - 0.08 / height_in, ha="left", va="top", fontsize=10)
    os.makedirs(os.path.dirname(os.path.abspath(os.fspath(path))), exist_ok=True)
    fig.savefig(os.fspath(path), dpi=PLOT_DPI, format="png")
  finally:
    plt.close(fig)
  return width_px, height_px
