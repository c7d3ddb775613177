"""Training: `config` (the trainer's settings, torch-free), `loop` (fit), `state` (what a checkpoint holds and how a
run resumes from it), `checkpoint` (the checkpoint folder), `sampler` (the training order, plain or length-grouped,
resumable mid-epoch). Import the module you need: this package imports nothing itself, so that reading a
TrainerConfig never imports torch."""
