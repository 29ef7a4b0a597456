"""Readers and writers for the real datasets' on-disk formats.

The synthetic world writes its datasets through the writers, and the notebooks read real and
synthetic data through the same readers, so each module follows the files as distributed:

* ``lavis``: MSR-VTT / MSVD caption JSON and COCO-style ground truth, as LAVIS ships them;
* ``vatex``: VATEX caption JSON (clip ids carrying the YouTube id and start/end seconds);
* ``vist``: VIST / SIND "story-in-sequence" stories and their photos;
* ``activitynet``: ActivityNet Captions JSON and BMT's I3D / VGGish ``.npy`` features;
* ``changeit``: ChangeIt categories, relevance scores, per-second labels, video files;
* ``videoqa``: multiple-choice video QA (TVQA / MSRVTT-MC style JSON, one file per split);
* ``merlot``: MERLOT-style pretraining videos with transcript segments (the kit's layout);
* ``errors``: ``FormatError`` and the skip-and-count policy (``Records``, ``Skipped``).
"""

from vidrepro.data.formats.errors import FormatError, OnError, Records, Skipped

__all__ = ["FormatError", "OnError", "Records", "Skipped"]
