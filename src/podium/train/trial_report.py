"""A `make tune` trial's epoch scores, reported to its Optuna study through accelerate's tracker
hook (the loop's `accelerator.log`), which may ask the fold to stop: the pruner's decision.

The tune stage names the study and trial in the fold's worker.json; the worker adds this tracker
to the Accelerator. Only the main process reports; the loop stops every process together
(`accelerator.check_trigger`).
"""

from __future__ import annotations

from collections.abc import Callable

from accelerate.tracking import GeneralTracker

from podium.config.workflow import TuneConfig


def make_pruner(tune: TuneConfig, epochs: int):
    """The study's pruner from tune.pruner, for trials of `epochs` epochs. Optuna keeps no pruner
    in its storage: the tune stage and each trial's worker build it from the same config."""
    import optuna

    after = tune.prune_after if tune.prune_after is not None else epochs // 2
    return {"median": lambda: optuna.pruners.MedianPruner(n_startup_trials=tune.startup_trials,
                                                          n_warmup_steps=after),
            "halving": lambda: optuna.pruners.SuccessiveHalvingPruner(min_resource=max(after, 1)),
            "none": optuna.pruners.NopPruner}[tune.pruner]()


class TrialReporter(GeneralTracker):
    name = "optuna"
    requires_logging_directory = False

    def __init__(self, tune: TuneConfig, epochs: int, storage: str, study: str, trial_id: int, metric: str,
                 step_offset: int = 0):
        super().__init__()
        import optuna  # only a tune trial's worker loads it

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._study = optuna.load_study(study_name=study, storage=storage, pruner=make_pruner(tune, epochs))
        self._trial = optuna.trial.Trial(self._study, trial_id)
        self.metric, self.step_offset = metric, step_offset
        self.stop: Callable[[], None] = lambda: None  # the loop sets it: accelerator.set_trigger
        self.pruned_at: int | None = None

    @property
    def tracker(self):
        return self._trial

    def log(self, values: dict, step: int | None = None, **kwargs) -> None:
        if self.metric not in values or step is None:
            return
        self._trial.report(float(values[self.metric]), self.step_offset + step)
        if self._trial.should_prune():
            self.pruned_at = step
            self.stop()

    @classmethod
    def from_job(cls, tune: TuneConfig, epochs: int, spec: dict) -> TrialReporter:
        return cls(tune, epochs, spec["storage"], spec["study"], int(spec["trial_id"]), spec["metric"],
                   int(spec["step_offset"]))
