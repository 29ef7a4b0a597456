"""BMHRL: bi-modal hierarchical RL dense video captioning (a BMT fork), rebuilt on the kit."""
