"""Occlusion masks hide exactly the documented pixels; apply_mask fills exactly the hidden ones."""

import numpy as np
import pytest

from spinemu.host.errors import InputError
from spinemu.host.occlusion import OCCLUSIONS, apply_mask, occlusion_mask, occlusion_masks


def rows(*text):
    """A mask written as strings of 0/1, one per row."""
    return np.array([[int(c) for c in row] for row in text], dtype=np.uint8)


FIXED = {
    ((4, 4), "bottom"): rows("1111", "1111", "0000", "0000"),
    ((4, 4), "top"): rows("0000", "0000", "1111", "1111"),
    ((4, 4), "left"): rows("0011", "0011", "0011", "0011"),
    ((4, 4), "right"): rows("1100", "1100", "1100", "1100"),
    # odd sizes: floor(H/2) rows or floor(W/2) columns are hidden, the middle one stays known
    ((5, 5), "bottom"): rows("11111", "11111", "11111", "00000", "00000"),
    ((5, 5), "top"): rows("00000", "00000", "11111", "11111", "11111"),
    ((5, 5), "left"): rows("00111", "00111", "00111", "00111", "00111"),
    ((5, 5), "right"): rows("11100", "11100", "11100", "11100", "11100"),
    ((3, 2), "bottom"): rows("11", "11", "00"),
    ((3, 2), "right"): rows("10", "10", "10"),
    ((1, 3), "top"): rows("111"),
}


def test_the_kinds():
    assert OCCLUSIONS == ("bottom", "top", "left", "right", "random")


@pytest.mark.parametrize("shape, kind", list(FIXED))
def test_fixed_kinds_hide_the_documented_pixels(shape, kind):
    mask = occlusion_mask(kind, shape)
    assert mask.dtype == np.uint8
    np.testing.assert_array_equal(mask, FIXED[shape, kind])


@pytest.mark.parametrize("shape", [(4, 4), (5, 5), (8, 8), (3, 7), (32, 32), (1, 1)])
def test_random_hides_exactly_half(shape):
    mask = occlusion_mask("random", shape, rng=3)
    assert mask.dtype == np.uint8 and mask.shape == shape
    assert set(np.unique(mask)) <= {0, 1}
    assert (mask == 0).sum() == shape[0] * shape[1] // 2


def test_random_is_the_documented_permutation():
    expected = np.ones(64, dtype=np.uint8)
    expected[np.random.default_rng(7).permutation(64)[:32]] = 0
    np.testing.assert_array_equal(occlusion_mask("random", (8, 8), rng=7), expected.reshape(8, 8))


def test_random_is_reproducible_and_depends_on_the_seed():
    a = occlusion_mask("random", (8, 8), rng=11)
    np.testing.assert_array_equal(a, occlusion_mask("random", (8, 8), rng=11))
    assert not np.array_equal(a, occlusion_mask("random", (8, 8), rng=12))
    # a Generator is advanced, so two calls on it give two different masks
    rng = np.random.default_rng(11)
    first, second = occlusion_mask("random", (8, 8), rng), occlusion_mask("random", (8, 8), rng)
    np.testing.assert_array_equal(first, a)
    assert not np.array_equal(first, second)


def test_random_needs_a_seed():
    with pytest.raises(ValueError, match="seed"):
        occlusion_mask("random", (8, 8))
    with pytest.raises(ValueError, match="seed"):
        occlusion_masks("random", 3, (8, 8))


def test_unknown_kind_names_the_kinds():
    for call in (lambda: occlusion_mask("middle", (8, 8)),
                 lambda: occlusion_masks("middle", 2, (8, 8), seed=0)):
        with pytest.raises(InputError, match="middle.*bottom, top, left, right, random"):
            call()


@pytest.mark.parametrize("shape", [(8,), (0, 8), (8, -1), (8.0, 8)])
def test_bad_shape(shape):
    with pytest.raises(ValueError, match="shape"):
        occlusion_mask("bottom", shape)


@pytest.mark.parametrize("kind", OCCLUSIONS[:4])
def test_batch_of_fixed_masks(kind):
    masks = occlusion_masks(kind, 3, (5, 5))
    assert masks.shape == (3, 5, 5) and masks.dtype == np.uint8
    for mask in masks:
        np.testing.assert_array_equal(mask, FIXED[(5, 5), kind])
    masks[0, 0, 0] = 7  # the batch is writable and its masks are separate arrays
    assert masks[1, 0, 0] != 7


def test_batch_of_random_masks():
    masks = occlusion_masks("random", 50, (5, 5), seed=4)
    assert masks.shape == (50, 5, 5) and masks.dtype == np.uint8
    assert ((masks == 0).sum(axis=(1, 2)) == 12).all()
    assert len({mask.tobytes() for mask in masks}) > 45  # independent, not one mask repeated
    np.testing.assert_array_equal(masks, occlusion_masks("random", 50, (5, 5), seed=4))
    np.testing.assert_array_equal(masks[:10], occlusion_masks("random", 10, (5, 5), seed=4))
    rng = np.random.default_rng(4)
    for mask in masks[:5]:
        np.testing.assert_array_equal(mask, occlusion_mask("random", (5, 5), rng))
    # every pixel is hidden in some masks and known in others
    assert (masks.mean(axis=0) > 0.2).all() and (masks.mean(axis=0) < 0.8).all()
    assert occlusion_masks("random", 0, (5, 5), seed=4).shape == (0, 5, 5)


def test_apply_mask_zero():
    images = np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4) + 1
    masks = np.stack([occlusion_mask("bottom", (4, 4)), occlusion_mask("random", (4, 4), rng=1)])
    before = images.copy()
    out = apply_mask(images, masks)
    assert out.dtype == np.uint8 and out.shape == images.shape
    np.testing.assert_array_equal(out[masks == 1], images[masks == 1])
    assert (out[masks == 0] == 0).all()
    np.testing.assert_array_equal(images, before)
    np.testing.assert_array_equal(out[0, 2:], 0)


def test_apply_mask_shared_mask_and_bool():
    images = np.full((3, 4, 4), 9, dtype=np.uint8)
    mask = occlusion_mask("left", (4, 4))
    out = apply_mask(images, mask.astype(bool))
    np.testing.assert_array_equal(out, np.broadcast_to(mask * 9, (3, 4, 4)))
    np.testing.assert_array_equal(apply_mask(images[0], mask), mask * 9)


def test_apply_mask_mean():
    images = np.full((2, 4, 4), 8, dtype=np.uint8)
    mean = np.arange(16, dtype=float).reshape(4, 4) / 4
    masks = occlusion_masks("random", 2, (4, 4), seed=5)
    out = apply_mask(images, masks, fill="mean", mean_image=mean)
    assert out.dtype == np.float64
    for image, mask in zip(out, masks, strict=True):
        np.testing.assert_array_equal(image[mask == 1], 8)
        np.testing.assert_array_equal(image[mask == 0], mean[mask == 0])


def test_apply_mask_errors():
    images = np.zeros((2, 4, 4), dtype=np.uint8)
    mask = occlusion_mask("top", (4, 4))
    with pytest.raises(ValueError, match="mean_image"):
        apply_mask(images, mask, fill="mean")
    with pytest.raises(ValueError, match="mean_image of shape"):
        apply_mask(images, mask, fill="mean", mean_image=np.zeros((4, 5)))
    with pytest.raises(ValueError, match="only 0"):
        apply_mask(images, mask * 2)
    with pytest.raises(ValueError, match="do not fit"):
        apply_mask(images, np.ones((3, 4, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match="unknown fill 'median'"):
        apply_mask(images, mask, fill="median")
    with pytest.raises(ValueError, match="images must be"):
        apply_mask(np.zeros(4), np.ones(4))
