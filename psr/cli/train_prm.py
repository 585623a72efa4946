"""`psr train-prm`: stepwise labels (TRL stepwise supervision or raw PRM800K) -> a PRM model directory."""

from __future__ import annotations

from psr.cli.root import app
from psr.cli.training_options import LAUNCH_HELP, TrainJob, training_options
from psr.stages import train_prm as stage


@app.command(
    "train-prm",
    help=(
        "Train a process reward model (paper §3.2, OpenR / Math-Shepherd style) on transformers' Trainer. Reads "
        "TRL stepwise-supervision records (prompt; completions: a list of steps; labels: a list of booleans) and raw "
        "PRM800K phase1/phase2 "
        "lines (label.steps[*].completions[*].rating: the chosen path plus each alternative, neutral ratings per "
        "--neutral), mixed in any -i files. The model reads 'question \\n step TAG \\n step TAG ...' and is "
        "trained to put '+' (good) or '-' (bad) after each tag; scoring reads P(+) at the same position. The tag "
        "and labels are saved in config.json (psr_prm), so `mine-pairs --prm DIR` needs no flags. Metrics: "
        "loss per logged step, step-level accuracy and AUC on --eval-fraction of the questions (before and "
        "after training). Paper defaults: 1 epoch, lr 1e-5, effective batch 128. " + LAUNCH_HELP.format(cmd="train-prm")
    ),
)
@training_options(
    epochs=1.0, learning_rate=1e-5, batch_size=128, per_device_batch_size=4, max_length=2048, cls=stage.PRMTrainConfig
)
def train_prm(*, job: TrainJob) -> None:
    stage.run(job.inputs, job.cfg, limit=job.limit)
