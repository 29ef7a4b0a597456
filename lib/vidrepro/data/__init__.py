"""Datasets: the synthetic world and readers/writers for the real datasets' on-disk formats."""
