"""Tests of the simple_shapes builder: layout, rule, determinism and the stored records."""

import hashlib

import numpy as np
import pytest

import aigc_jax.data as data
from aigc_jax.data import simple_shapes as ss


def test_layout_regions_and_templates():
  assert ss.REGION_COLUMNS == ((0, 10), (11, 21), (22, 32)) and ss.GUTTER_COLUMNS == (10, 21)
  covered = sorted(c for start, stop in ss.REGION_COLUMNS for c in range(start, stop))
  assert sorted(covered + list(ss.GUTTER_COLUMNS)) == list(range(32))  # A partition.
  assert {n: int(t.sum()) for n, t in ss.TEMPLATES.items()} == {
    "triangle": 40,
    "square": 36,
    "pentagon": 53,
  }
  for template in ss.TEMPLATES.values():
    np.testing.assert_array_equal(template, template[:, ::-1])  # Left-right symmetric.
    assert template.shape[1] <= ss.REGION_WIDTH
  assert ss.class_names() == [
    "triangle",
    "square",
    "triangle+square",
    "pentagon",
    "triangle+pentagon",
    "square+pentagon",
    "triangle+square+pentagon",
  ]
  np.testing.assert_array_equal(
    ss.label_of([[1, 0, 0], [0, 1, 0], [1, 1, 1], [0, 0, 0]]), [0, 1, 6, -1]
  )


@pytest.mark.parametrize("region", range(3))
def test_placements_are_every_position_inside_the_region(region):
  height, width = ss.TEMPLATES[ss.SHAPE_NAMES[region]].shape
  start, stop = ss.REGION_COLUMNS[region]
  expected = {
    (r, c)
    for r in range(32)
    for c in range(32)
    if r + height <= 32 and start <= c and c + width <= stop
  }
  assert {tuple(p) for p in ss.placements(region)} == expected


def test_draws_follow_the_rule():
  positions = ss.draw_positions(20_000, seed=1)
  present = positions[:, :, 0] >= 0
  for region in range(3):
    assert abs(present[:, region].mean() - 0.5) < 5 * np.sqrt(0.25 / 20_000)
    # Uniform over the region's placements: every one drawn, none more than 5 sd too often.
    options = [tuple(p) for p in ss.placements(region)]
    counts = np.zeros(len(options))
    for p in positions[present[:, region], region]:
      counts[options.index(tuple(p))] += 1
    expected = present[:, region].sum() / len(options)
    assert counts.min() > 0 and np.all(np.abs(counts - expected) < 5 * np.sqrt(expected))
  # Independent regions: all 8 patterns about equally often.
  patterns = np.bincount(present @ np.array([1, 2, 4]), minlength=8) / 20_000
  np.testing.assert_allclose(patterns, 1 / 8, atol=5 * np.sqrt(1 / 8 * 7 / 8 / 20_000))
  np.testing.assert_array_equal(ss.draw_positions(50, seed=1), positions[:50])  # Seeded.


def test_render_pastes_binary_templates():
  positions = np.array([[[3, 1], [-1, -1], [20, 23]]])
  image = ss.render(positions)[0, :, :, 0]
  assert image.dtype == np.uint8 and set(np.unique(image)) == {0, 255}
  expected = np.zeros((32, 32), np.uint8)
  expected[3:11, 1:10][ss.TEMPLATES["triangle"]] = 255
  expected[20:29, 23:32][ss.TEMPLATES["pentagon"]] = 255
  np.testing.assert_array_equal(image, expected)


def test_splits_are_fixed():
  splits = ss.split_examples()
  assert {s: len(d) for s, (d, _) in splits.items()} == {"train": 5000, "test": 1000}
  draws = np.concatenate([d for d, _ in splits.values()])
  np.testing.assert_array_equal(draws, np.sort(draws))  # The first non-empty draws, in order.
  digests = {
    s: hashlib.sha256(ss.render(p).tobytes()).hexdigest()[:16] for s, (_, p) in splits.items()
  }
  assert digests == {"train": "9eb361b9e6afcf06", "test": "1b5725c7c6b41e7b"}


def test_tfds_records_are_the_rendered_images(known_support_data_dir):
  spec = data.get_dataset_spec("simple_shapes")
  assert spec.kind == "image" and spec.sample_shape == (32, 32, 1) and spec.num_classes == 7
  assert spec.has_known_support
  for split, (draws, positions) in ss.split_examples().items():
    source = data.load_data_source("simple_shapes", split, known_support_data_dir)
    records = source.__getitems__(list(range(len(source))))
    np.testing.assert_array_equal([int(r["index"]) for r in records], draws)
    np.testing.assert_array_equal(np.stack([r["positions"] for r in records]), positions)
    images, labels = data.load_split_arrays("simple_shapes", split, known_support_data_dir)
    np.testing.assert_array_equal(images, ss.render(positions))
    np.testing.assert_array_equal(labels, ss.label_of(positions[:, :, 0] >= 0))
    assert not images[:, :, list(ss.GUTTER_COLUMNS)].any()  # Nothing outside the regions.
    assert images.reshape(len(images), -1).any(axis=1).all()  # No all-black image.
  batch = next(
    data.create_iterator(
      "simple_shapes",
      "train",
      global_batch_size=16,
      num_local_devices=8,
      seed=0,
      train=True,
      data_dir=known_support_data_dir,
      process_index=0,
      process_count=1,
    )
  )
  assert batch["image"].shape == (8, 2, 32, 32, 1)
  assert set(np.unique(batch["image"])) == {0.0, 1.0}  # uint8 255 -> 1.0 exactly.
