"""Multi-task learning of object state changes (Souček et al., 2022)."""
