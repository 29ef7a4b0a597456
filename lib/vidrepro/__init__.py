"""vidrepro: a notebook-driven reproducibility kit for four video-language papers.

The notebooks under ``notebooks/`` are thin; the science lives here, one sub-package per paper
(``merlot``, ``blip2_video``, ``bmhrl``, ``object_states``) beside the shared pieces
(``video``, ``data``, ``metrics``, ``rl``) and the machinery that turns notebooks into tables
(``params``, ``runs``, ``tables``, ``cli``).
"""

__version__ = "0.1.0"
