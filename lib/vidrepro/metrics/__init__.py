"""Caption metrics: pycocoevalcap-exact evaluation and a fast CIDEr-D for RL rewards.

Submodules are imported explicitly (``vidrepro.metrics.captions``,
``vidrepro.metrics.cider``) so that importing the package never pulls in
pycocoevalcap or checks for Java.
"""
