"""Why a `simple_shapes` sample is invalid: Aithal et al.'s mode interpolation, or a rendering
artifact.

Aithal, Maini, Lipton & Kolter (NeurIPS 2024, arXiv 2406.09358) call a Simple Shapes
hallucination "mode interpolation" when the model combines whole shapes of the data into an
image the data never holds. The exact parser (`data.shapes_parser`) already says which region
is OTHER and what is stray; here each invalid image gets its reasons, and each reason its kind:

  reason        what it is (parser terms)                                   kind
  wrong_shape   an OTHER region holds one whole shape of another region     mode_interpolation
                (`ShapesParse.fits[n, r, s]`, s != r: the shape rules pass
                with that region's template)
  two_shapes    an OTHER region holds two whole shapes (any two of the      mode_interpolation
                three types, the same type twice included), side by side or
                one above the other, not overlapping: each passes the
                parser's rules 1 and 2 (drawn, inked core) and every visible
                pixel of the region lies within one pixel of one of them
  malformed     any other OTHER region: a fragment, a partial or faint      rendering_artifact
                shape, a blend, noise, overlapping shapes
  stray         a visible gutter pixel within one pixel of no whole shape   rendering_artifact
                found (the parser's own shapes, and the whole shapes of
                wrong_shape / two_shapes, whose blur into a gutter is part
                of them, not a separate artifact)
  blank         nothing visible anywhere (the dataset holds no all-black    rendering_artifact
                image): a failed rendering, not a combination of modes

Three or more whole shapes in one region count as malformed (not searched: they need 24 of
the region's 32 rows and were not seen in samples).

An invalid image may have several reasons; its kind is exclusive: `mode_interpolation` when
every reason it has is of that kind, `rendering_artifact` when every reason is an artifact,
`mixed` when it has both. So mode_interpolation + rendering_artifact + mixed = invalid.
"""

import dataclasses
from typing import Dict

import numpy as np

from aigc_jax.data import shapes_parser, simple_shapes

REASONS = ("wrong_shape", "two_shapes", "malformed", "stray", "blank")
MODE_INTERPOLATION = "mode_interpolation"
RENDERING_ARTIFACT = "rendering_artifact"
KIND_OF_REASON = {
  "wrong_shape": MODE_INTERPOLATION,
  "two_shapes": MODE_INTERPOLATION,
  "malformed": RENDERING_ARTIFACT,
  "stray": RENDERING_ARTIFACT,
  "blank": RENDERING_ARTIFACT,
}
KINDS = (MODE_INTERPOLATION, RENDERING_ARTIFACT, "mixed")

# Per shape type (`simple_shapes.SHAPE_NAMES` order): its template [h, w], the template's core
# (rule 2) and its one-pixel halo [h + 2, w + 2] (rule 3), as the parser defines them.
_TEMPLATES = tuple(simple_shapes.TEMPLATES[name] for name in simple_shapes.SHAPE_NAMES)
_CORES = tuple(shapes_parser._core(t) for t in _TEMPLATES)  # pylint: disable=protected-access
_HALOS = tuple(shapes_parser._dilated(t) for t in _TEMPLATES)  # pylint: disable=protected-access


@dataclasses.dataclass(frozen=True)
class InvalidReasons:
  """Why each of N images is invalid.

  Attributes:
    valid: [N] bool, the parser's validity.
    reasons: {reason: [N] bool} for each of `REASONS` (an image may have several; a valid
      image has none, an invalid one at least one).
    kinds: {kind: [N] bool} for each of `KINDS`, exclusive; their union is ~valid.
  """

  valid: np.ndarray
  reasons: Dict[str, np.ndarray]
  kinds: Dict[str, np.ndarray]

  def counts(self) -> Dict[str, int]:
    """{"n", "invalid", each kind, "reason_<reason>" for each reason}: image counts."""
    out = {"n": int(self.valid.size), "invalid": int(np.sum(~self.valid))}
    out.update({kind: int(np.sum(flags)) for kind, flags in self.kinds.items()})
    out.update({f"reason_{name}": int(np.sum(flags)) for name, flags in self.reasons.items()})
    return out


def _placements(region_images: np.ndarray, type_index: int) -> np.ndarray:
  """[N, rows, cols] bool: the shape type's template at (row, col) of the region passes the
  parser's rules 1 and 2 (every template pixel drawn, every core pixel inked);
  region_images [N, 32, 10]."""
  template = _TEMPLATES[type_index]
  windows = np.lib.stride_tricks.sliding_window_view(region_images, template.shape, axis=(1, 2))
  drawn = windows[..., template].min(axis=-1) > shapes_parser.DRAWN
  inked = windows[..., _CORES[type_index]].min(axis=-1) > shapes_parser.INKED
  return drawn & inked


def _placed(mask: np.ndarray, row: int, col: int, frame_shape) -> np.ndarray:
  out = np.zeros(frame_shape, bool)
  out[row : row + mask.shape[0], col : col + mask.shape[1]] = mask
  return out.reshape(-1)


# Every region is 32 x 10, so one bank serves all three: per shape type, for each position
# (row-major over `_placements`' [rows, cols]) its halo and its pixels, flattened over the
# region padded by one pixel ([34 * 12]); the template at (row, col) is at (row + 1, col + 1)
# of the padded frame, its halo starts at (row, col).
_FRAME = (simple_shapes.IMAGE_SIZE + 2, simple_shapes.REGION_WIDTH + 2)


def _bank(masks_and_offsets):
  out = []
  for template, mask, offset in masks_and_offsets:
    rows = simple_shapes.IMAGE_SIZE - template.shape[0] + 1
    cols = simple_shapes.REGION_WIDTH - template.shape[1] + 1
    out.append(
      np.stack(
        [_placed(mask, r + offset, c + offset, _FRAME) for r in range(rows) for c in range(cols)]
      )
    )
  return tuple(out)


_HALO_BANK = _bank((t, h, 0) for t, h in zip(_TEMPLATES, _HALOS))
_SHAPE_BANK = _bank((t, t, 1) for t in _TEMPLATES)
# Two halos cover at most this many pixels: a region with more visible holds no two shapes.
_MAX_TWO_HALOS = 2 * max(int(h.sum()) for h in _HALOS)


def _two_whole_shapes(visible: np.ndarray, passing) -> tuple:
  """A pair of non-overlapping placements passing rules 1 and 2 within one pixel of which
  every visible pixel lies, as ((type, position index), (type, position index)), or ().

  Args:
    visible: [34 * 12] bool, the region's visible pixels padded by one pixel, flattened.
    passing: per shape type, [positions] bool: the placements passing rules 1 and 2.
  """
  count = int(visible.sum())
  if count > _MAX_TWO_HALOS:
    return ()
  candidates = [(s, int(i)) for s in range(3) for i in np.flatnonzero(passing[s])]
  if len(candidates) < 2:
    return ()
  halos = np.stack([_HALO_BANK[s][i] for s, i in candidates]).astype(np.float32)
  shapes = np.stack([_SHAPE_BANK[s][i] for s, i in candidates]).astype(np.float32)
  # One of the two covers the first visible pixel: call it a (few candidates do).
  first = int(np.argmax(visible))
  anchored = np.flatnonzero(halos[:, first] > 0)
  if not len(anchored):
    return ()
  left_over = visible[None].astype(np.float32) * (1.0 - halos[anchored])  # Not near a.
  uncovered = left_over @ (1.0 - halos).T  # [A, C]: near neither a nor b (exact counts).
  overlap = shapes[anchored] @ shapes.T
  pairs = np.argwhere((uncovered == 0) & (overlap == 0))
  if not len(pairs):
    return ()
  a, b = pairs[0]
  return candidates[anchored[a]], candidates[b]


def invalid_reasons(images) -> InvalidReasons:
  """The reasons and kind of each invalid image (module docstring).

  Args:
    images: [N, 32, 32, 1] or [N, 32, 32], float in [0, 1] (uint8 is scaled by 1/255).
  """
  images = shapes_parser._as_images(images)  # pylint: disable=protected-access
  parse = shapes_parser.parse(images)
  num_images = len(images)
  other = parse.status == shapes_parser.OTHER  # [N, 3]
  wrong_shape = other & parse.fits.any(axis=2)  # fits[n, r, r] is False where r is OTHER.
  two_shapes = np.zeros_like(other)
  # Halos of the whole shapes found (the parser's, then the interpolations'), in the image
  # padded by one pixel: what explains a visible gutter pixel.
  explained = np.zeros((num_images, images.shape[1] + 2, images.shape[2] + 2), bool)

  def explain(n: int, type_index: int, row: int, col: int) -> None:
    """Marks the halo of the shape at image (row, col) (its corner, in padded coordinates)."""
    halo = _HALOS[type_index]
    explained[n, row : row + halo.shape[0], col : col + halo.shape[1]] |= halo

  def explain_placement(n: int, type_index: int, position: int, region_start: int) -> None:
    """`explain` of the shape at `_placements`' flat `position` in the region."""
    row, col = divmod(
      int(position), simple_shapes.REGION_WIDTH - _TEMPLATES[type_index].shape[1] + 1
    )
    explain(n, type_index, row, col + region_start)

  for r, (start, stop) in enumerate(simple_shapes.REGION_COLUMNS):
    for n in np.flatnonzero(parse.status[:, r] == shapes_parser.SHAPE):
      explain(n, r, *parse.positions[n, r])
    rows = np.flatnonzero(other[:, r])
    if not len(rows):
      continue
    region = images[rows, :, start:stop]
    passing = [_placements(region, s).reshape(len(rows), -1) for s in range(3)]
    visible = (np.pad(region, ((0, 0), (1, 1), (1, 1))) > shapes_parser.VISIBLE).reshape(
      len(rows), -1
    )
    for i, n in enumerate(rows):
      if wrong_shape[n, r]:  # The parser's diagnosis; its placement, for the halo.
        s, index = next(
          (s, index)
          for s in range(3)
          if s != r
          for index in np.flatnonzero(passing[s][i])
          if not (visible[i] & ~_HALO_BANK[s][index]).any()
        )
        explain_placement(n, s, index, start)
        continue
      pair = _two_whole_shapes(visible[i], [p[i] for p in passing])
      if pair:
        two_shapes[n, r] = True
        for s, index in pair:
          explain_placement(n, s, index, start)
  gutters = list(simple_shapes.GUTTER_COLUMNS)
  visible = images > shapes_parser.VISIBLE
  stray = (visible[:, :, gutters] & ~explained[:, 1:-1, 1:-1][:, :, gutters]).any(axis=(1, 2))
  reasons = {
    "wrong_shape": wrong_shape.any(axis=1),
    "two_shapes": two_shapes.any(axis=1),
    "malformed": (other & ~wrong_shape & ~two_shapes).any(axis=1),
    "stray": stray,
    "blank": ~visible.any(axis=(1, 2)),
  }
  interpolation = np.zeros(num_images, bool)
  artifact = np.zeros(num_images, bool)
  for name, flags in reasons.items():
    if KIND_OF_REASON[name] == MODE_INTERPOLATION:
      interpolation |= flags
    else:
      artifact |= flags
  kinds = {
    MODE_INTERPOLATION: interpolation & ~artifact,
    RENDERING_ARTIFACT: artifact & ~interpolation,
    "mixed": interpolation & artifact,
  }
  return InvalidReasons(valid=parse.valid, reasons=reasons, kinds=kinds)
