"""One fold's training: the Accelerate loop (loop) and what it uses: the fold's loaders (loaders),
the model (models), the optimizer (optimizer), the lr and size schedules (schedule), Mixup/CutMix
(mix), targets and losses (losses), teachers' targets (teachers), precision and memory format
(precision), checkpoints (checkpoint) and the `accelerate launch` command line (launch)."""
