"""MERLOT: multimodal neural script knowledge models (Zellers et al., NeurIPS 2021), in JAX/Flax."""
