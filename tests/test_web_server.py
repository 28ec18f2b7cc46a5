"""web/server.py: ``serve`` loads the model, builds the studio over one temporary folder (Gradio's
files included) and launches it with the app's options; the folder is gone when the server stops."""

from __future__ import annotations

import os

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before anything imports gradio

import signal
from pathlib import Path

import pytest

from maskgit.web.server import serve
from maskgit.web.studio import Limits, Studio


class _FakeDemo:
    """Stands in for the Gradio app: records how it was launched and what existed at that moment."""

    def __init__(self, studio: Studio, record: dict) -> None:
        self.studio, self.record = studio, record

    def launch(self, **options) -> None:
        self.record.update(options=options, studio=self.studio, workdir=self.studio.workdir,
                           workdir_existed=self.studio.workdir.is_dir(), gradio_temp=os.environ["GRADIO_TEMP_DIR"],
                           sigterm=signal.getsignal(signal.SIGTERM))


def test_serve_launches_the_studio_in_a_temporary_folder_it_removes(monkeypatch, capsys):
    app = pytest.importorskip("maskgit.web.app", reason="needs the web extra (gradio)")
    record: dict = {}
    monkeypatch.setattr(app, "build_app", lambda studio: _FakeDemo(studio, record))
    monkeypatch.setenv("GRADIO_TEMP_DIR", "unchanged")  # serve sets it; restored after the test
    previous = signal.getsignal(signal.SIGTERM)
    limits = Limits(max_upload_bytes=1234, max_images=2)
    try:
        serve("fashion-mnist", host="127.0.0.1", port=7999, device="cpu", limits=limits)
    finally:
        signal.signal(signal.SIGTERM, previous)
    studio = record["studio"]
    assert studio.model == "fashion-mnist" and studio.limits == limits and studio.image_size == 32
    assert record["options"] == app.launch_options("127.0.0.1", 7999, limits)
    temp = record["workdir"].parent
    assert record["workdir_existed"] and record["workdir"].name == "runs" and temp.name.startswith("maskgit-studio-")
    assert Path(record["gradio_temp"]) == temp / "gradio"  # uploads and Gradio's cache in the same folder
    assert record["sigterm"] is signal.default_int_handler  # a terminated server cleans up like Ctrl-C
    assert not temp.exists()
    assert f"maskgit studio: model fashion-mnist on cpu; files under {temp}" in capsys.readouterr().out


def test_a_bad_device_fails_before_the_model_loads(monkeypatch):
    from maskgit.pipeline import MaskGIT

    def never(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(MaskGIT, "from_pretrained", never)
    with pytest.raises(ValueError, match="unknown device 'potato'"):
        serve("fashion-mnist", device="potato")
