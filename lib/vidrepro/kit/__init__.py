"""The kit's own notebooks (not a paper): checking that an installation works."""
