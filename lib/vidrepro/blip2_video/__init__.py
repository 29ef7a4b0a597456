"""BLIP-2 adapted to video captioning with SCST (Zhang, Jian et al., NAACL 2025)."""
