"""Editing masks and composites: boxes, extents, token masks, the blending weight and canvases."""

from __future__ import annotations

import pytest
import torch

from maskgit.sampling.editing import (
    Box,
    Extend,
    composite,
    composite_mask,
    latent_box_mask,
    outpaint_canvas,
    token_mask_from_pixels,
)


def test_box_parses_both_separators_and_rejects_bad_text():
    assert Box.parse("128,64,256,288") == Box(128, 64, 256, 288)
    assert Box.parse("128_64_256_288") == Box(128, 64, 256, 288)  # the official demo's spelling
    with pytest.raises(ValueError, match="TOP,LEFT,HEIGHT,WIDTH in pixels, got '1,2,x,4'"):
        Box.parse("1,2,x,4")
    with pytest.raises(ValueError, match="4 numbers"):
        Box.parse("1,2,3")


def test_box_must_lie_inside_the_image_with_a_positive_size():
    Box(0, 0, 32, 32).check_inside(32, 32)
    with pytest.raises(ValueError, match="outside the 32x32 image"):
        Box(16, 0, 17, 8).check_inside(32, 32)
    with pytest.raises(ValueError, match="outside"):
        Box(-1, 0, 8, 8).check_inside(32, 32)
    with pytest.raises(ValueError, match="positive height and width"):
        Box(0, 0, 0, 8).check_inside(32, 32)


def test_latent_box_is_grown_by_one_token_and_clipped():
    mask = latent_box_mask(Box(32, 48, 32, 16), 128, 128)  # tokens rows 2..3, column 3
    assert mask.shape == (8, 8) and mask.dtype == torch.bool
    rows, cols = mask.nonzero(as_tuple=True)
    assert (int(rows.min()), int(rows.max())) == (1, 4)
    assert (int(cols.min()), int(cols.max())) == (2, 4)
    assert int(mask.sum()) == 4 * 3
    corner = latent_box_mask(Box(0, 0, 16, 16), 64, 64)
    assert corner[:2, :2].all() and int(corner.sum()) == 4


def test_latent_box_keeps_the_official_end_arithmetic():
    # The official end is height//f + top//f + 1, not (top + height)//f + 1: for top = height = 24
    # that is row 3, where (24 + 24)//16 + 1 would be 4.
    mask = latent_box_mask(Box(24, 0, 24, 16), 128, 128, factor=16)
    assert mask[:, 0].nonzero().flatten().tolist() == [0, 1, 2]


def test_token_mask_marks_every_token_the_pixel_mask_touches():
    pixels = torch.zeros(32, 48, dtype=torch.bool)
    pixels[15, 16] = True  # the corner pixel of token (1, 2) at factor 8
    pixels[31, 47] = True
    tokens = token_mask_from_pixels(pixels, 8)
    assert tokens.shape == (4, 6)
    assert tokens.nonzero().tolist() == [[1, 2], [3, 5]]
    with pytest.raises(ValueError, match="multiples of 12, got 32x48"):
        token_mask_from_pixels(pixels, 12)
    with pytest.raises(ValueError, match=r"must be \(H, W\)"):
        token_mask_from_pixels(pixels[None], 8)


def test_composite_mask_is_a_soft_weight_that_is_one_inside_and_zero_far_away():
    tokens = torch.zeros(8, 8, dtype=torch.bool)
    tokens[2:6, 2:6] = True
    alpha = composite_mask(tokens, 128, 128)
    assert alpha.shape == (128, 128) and alpha.dtype == torch.float32
    assert float(alpha.min()) >= 0.0 and float(alpha.max()) <= 1.0
    assert float(alpha[64, 64]) == 1.0 and float(alpha[0, 0]) == 0.0
    assert 0.0 < float(alpha[32, 64]) < 1.0  # blurred (radius 7) across the box edge
    # Below 32 px the blur radius is 0: only the bicubic resize softens the edge.
    small = composite_mask(tokens, 16, 16)
    assert float(small[8, 8]) == 1.0 and float(small[0, 0]) == 0.0


def test_composite_blends_per_pixel():
    generated = torch.ones(2, 3, 4, 4)
    original = torch.zeros(2, 3, 4, 4, dtype=torch.float64)
    alpha = torch.tensor([[0.0, 0.25, 0.5, 1.0]]).expand(4, 4)
    out = composite(generated, original, alpha)
    assert out.dtype == torch.float32
    assert torch.equal(out[1, 2, 3], torch.tensor([0.0, 0.25, 0.5, 1.0]))


def test_extend_rounds_each_side_up_to_tokens():
    assert Extend.parse("0,17,16,1").in_tokens(16) == Extend(0, 2, 1, 1)
    with pytest.raises(ValueError, match="at least one pixel"):
        Extend(0, 0, 0, 0).in_tokens(16)
    with pytest.raises(ValueError, match="must not be negative"):
        Extend(0, -16, 0, 0).in_tokens(16)
    with pytest.raises(ValueError, match="TOP,RIGHT,BOTTOM,LEFT in pixels"):
        Extend.parse("a,b,c,d")
    with pytest.raises(ValueError, match="4 numbers"):
        Extend.parse("1,2")


def test_outpaint_canvas_pads_each_side_with_the_mask_id():
    ids = torch.arange(6).reshape(1, 2, 3)
    canvas = outpaint_canvas(ids, Extend(1, 2, 0, 1))
    assert canvas.shape == (1, 3, 6)
    assert torch.equal(canvas[0, 1:, 1:4], ids[0])
    assert int((canvas == -1).sum()) == 3 * 6 - 6
    assert int((outpaint_canvas(ids, Extend(0, 1, 0, 0), mask_id=99) == 99).sum()) == 2
