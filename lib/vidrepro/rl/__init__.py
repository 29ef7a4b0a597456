"""Reinforcement-learning pieces shared by the captioning papers (SCST, rewards, baselines)."""
