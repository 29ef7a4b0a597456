"""Video I/O: sampling frames the way the papers did, reading audio, writing test videos."""

from vidrepro.video.decode import VideoDecodeError, VideoInfo, probe, read_audio, sample_frames
from vidrepro.video.write import write_video

__all__ = ["VideoDecodeError", "VideoInfo", "probe", "read_audio", "sample_frames", "write_video"]
