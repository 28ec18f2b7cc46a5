"""web/app.py: the Gradio app's editor helpers and its one queue slot (needs the web extra)."""

from __future__ import annotations

import os

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before anything imports gradio


import numpy as np
import pytest
import torch
from PIL import Image

from maskgit.imageio import to_uint8
from maskgit.sampling.editing import Box


def test_painted_layer_becomes_a_mask_and_a_box(studio, tmp_path):
    app = pytest.importorskip("maskgit.web.app", reason="needs the web extra (gradio)")
    scale = app._display_scale(studio)  # 32 px shown at 256
    layer = np.zeros((32 * scale, 32 * scale, 4), np.uint8)
    layer[5 * scale + 3 : 9 * scale, 10 * scale : 12 * scale + 1, 3] = 255  # strokes on a transparent layer
    Image.fromarray(layer, "RGBA").save(tmp_path / "layer.png")
    mask = app._painted_mask({"layers": [str(tmp_path / "layer.png")]}, studio)
    assert mask.nonzero()[:, 0].unique().tolist() == [5, 6, 7, 8]
    assert mask.nonzero()[:, 1].unique().tolist() == [10, 11, 12]
    assert app._box_of(mask) == Box(5, 10, 4, 3)
    assert not app._painted_mask({"layers": []}, studio).any()
    with pytest.raises(ValueError, match="no box: paint over the part to edit"):
        app._box_of(torch.zeros(32, 32, dtype=torch.bool))
    with pytest.raises(ValueError, match="the painted layer is not the editor's size"):
        Image.new("RGBA", (257, 256)).save(tmp_path / "huge.png")
        app._painted_mask({"layers": [str(tmp_path / "huge.png")]}, studio)


def test_runs_share_one_queue_slot(studio):
    app = pytest.importorskip("maskgit.web.app", reason="needs the web extra (gradio)")
    demo = app.build_app(studio)
    runs = [fn for fn in demo.fns.values() if fn.name.startswith("do_")]
    assert sorted(fn.name for fn in runs) == ["do_edit", "do_generate", "do_inpaint", "do_outpaint"]
    assert {fn.concurrency_id for fn in runs} == {"model"}
    assert {fn.concurrency_limit for fn in runs} == {"default"} and demo._queue.default_concurrency_limit == 1


def test_user_errors_become_page_messages_and_bugs_do_not():
    app = pytest.importorskip("maskgit.web.app", reason="needs the web extra (gradio)")
    import gradio as gr

    def fails_with(error):
        @app._user_errors
        def run():
            raise error

        return run

    for error in (ValueError("steps must be between 1 and 64"), FileNotFoundError("gone.png")):
        with pytest.raises(gr.Error, match=str(error)):
            fails_with(error)()
    with pytest.raises(ZeroDivisionError):  # a bug keeps its type and traceback
        fails_with(ZeroDivisionError("bug"))()
    assert app._user_errors(lambda x: x + 1)(1) == 2


def test_editors_show_the_image_scaled_up_by_whole_pixels(studio):
    app = pytest.importorskip("maskgit.web.app", reason="needs the web extra (gradio)")
    scale = app._display_scale(studio)
    assert scale == 8  # 32-pixel images in an editor of at least 256
    image = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))
    shown = app._display(image, scale)
    assert shown.shape == (256, 256, 3) and shown.dtype == np.uint8
    np.testing.assert_array_equal(shown[::scale, ::scale], to_uint8(image))
    np.testing.assert_array_equal(shown[7::scale, 7::scale], to_uint8(image))  # nearest: whole blocks
