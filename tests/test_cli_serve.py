"""``maskgit serve``: bad options are exit 2 before anything loads; the studio needs the web extra."""

from __future__ import annotations

import os

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before anything imports gradio





def test_serve_refuses_a_bad_port_or_device(capsys):
    from maskgit.cli import main

    assert main(["serve", "--port", "0"]) == 2
    assert "--port must be in [1, 65535], got 0" in capsys.readouterr().err
    assert main(["serve", "--device", "nope"]) == 2
    assert "nope" in capsys.readouterr().err


def test_serve_without_gradio_says_how_to_install_it(capsys, monkeypatch):
    import importlib.util

    from maskgit.cli import main

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gradio" else find_spec(name, *a))
    assert main(["serve", "--device", "cpu"]) == 2
    assert "maskgit serve: error: the studio needs Gradio: pip install 'maskgit[web]'" in capsys.readouterr().err


def test_serve_hands_its_options_to_the_server(monkeypatch):
    import importlib.util

    import maskgit.web.server
    from maskgit.cli import main

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "gradio" else find_spec(name, *a))
    calls = []
    monkeypatch.setattr(maskgit.web.server, "serve", lambda model, **options: calls.append((model, options)))
    assert main(["serve", "--model", "my-model", "--host", "0.0.0.0", "--port", "8000", "--device", "cpu",
                 "--precision", "bf16"]) == 0
    assert calls == [("my-model", {"host": "0.0.0.0", "port": 8000, "device": "cpu", "precision": "bf16"})]
    calls.clear()
    assert main(["serve"]) == 0
    assert calls[0][0] == "fashion-mnist" and calls[0][1]["host"] == "127.0.0.1" and calls[0][1]["port"] == 7860
