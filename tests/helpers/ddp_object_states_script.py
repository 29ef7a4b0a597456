"""Run by tests/test_object_states_train.py under torchrun (2 processes, gloo on CPU): a few
training steps of the multi-task model, then a distributed evaluation of the saved model.

    torchrun --nproc_per_node 2 ddp_object_states_script.py DATA_ROOT OUT

Writes (rank 0) OUT/model, OUT/scores_all.json and OUT/scores_one.json (one video per category,
an odd count across two processes), and each rank's final weights OUT/rank<r>.safetensors.
"""

import json
import sys
from pathlib import Path

from safetensors.torch import save_file

from vidrepro.object_states import pipeline, train
from vidrepro.object_states.params import EvalParams, TrainParams
from vidrepro.training import distributed

if __name__ == "__main__":
    root, out = sys.argv[1], Path(sys.argv[2])
    rank, world = distributed()
    assert world == 2, world
    p = TrainParams(
        data_root=root, steps=2, batch_size=2, lr=1e-2, lr_backbone=1e-3, checkpoint_every=1
    )
    models = train.train(p, out / "ckpt")
    model = models[""][0]
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()}, out / f"rank{rank}.safetensors"
    )
    if rank == 0:
        train.save_run(out / "model", models, p)
    for name, per_category in (("all", 0), ("one", 1)):
        scores, _ = pipeline.evaluate(
            model, EvalParams(model="-", data_root=root, videos_per_category=per_category)
        )
        if rank == 0:
            text = json.dumps(pipeline.scores_json(scores))
            (out / f"scores_{name}.json").write_text(text)
