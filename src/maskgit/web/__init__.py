"""The MaskGIT studio in the browser (``maskgit serve``), an optional extra: ``pip install 'maskgit[web]'``.

``studio`` holds what each tab does (no UI, no Gradio), ``strip`` renders the decoding steps, ``app``
is the Gradio page, and ``server.serve`` runs it.
"""
