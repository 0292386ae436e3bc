"""Whole-run totals of a Trainer run (tokens trained, mean training loss) that survive a kill and a resume: each
checkpoint's trainer_state.json keeps them (under `stateful_callbacks`) and a resumed run goes on from them."""

from __future__ import annotations

from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

from llm_finetune.training.job import summed_over_processes

COUNTS = ("real_tokens", "padded_tokens", "loss_tokens")  # attributes of a token counter (TrainingTokenCounter)


class RunTotals(TrainerCallback, ExportableState):
    """A counter's token counts and the training-loss sum of the whole run, carried across resumes.

    Counts are kept summed over the processes of a torchrun job. Every checkpoint step is logged too, so the loss
    sum a checkpoint keeps covers each step up to it.
    """

    def __init__(self, counter):
        self.counter = counter
        self.restored = dict.fromkeys(COUNTS, 0)  # from the checkpoint resumed
        self.restored_loss_sum = 0.0
        self.first_step = 0  # the step the totals start after: the resumed step if its checkpoint kept none
        self.resumed_step = 0
        self.loss_sum = 0.0  # per-step loss summed over the steps logged so far
        self._logged_step = 0
        self._at_checkpoint = dict(self.restored)

    def state(self) -> dict:
        return {"args": {}, "attributes": {"counts": self._at_checkpoint, "loss_sum": self.loss_sum,
                                           "first_step": self.first_step}}

    def on_train_begin(self, args, state, control, **kwargs):
        name = type(self).__name__
        saved = state.stateful_callbacks.get(name)
        self.resumed_step = self._logged_step = state.global_step
        if saved is None:  # a checkpoint from before RunTotals: its totals are lost
            self.first_step = state.global_step
        else:
            kept = saved["attributes"]
            self.restored, self.first_step = {c: kept["counts"].get(c, 0) for c in COUNTS}, kept["first_step"]
            self.restored_loss_sum = self.loss_sum = kept["loss_sum"]
        self._at_checkpoint = dict(self.restored)
        state.stateful_callbacks[name] = self.state()  # the Trainer updates this entry at each checkpoint

    def on_step_end(self, args, state, control, **kwargs):
        if control.should_save:
            control.should_log = True  # logged before it is saved: the checkpoint's loss sum covers this step
            self._at_checkpoint = self.counts()  # every process is here: the sum over processes can be taken

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.loss_sum += float(logs["loss"]) * (state.global_step - self._logged_step)
            self._logged_step = state.global_step

    def counts(self) -> dict[str, int]:
        """Tokens of the whole run, summed over processes (under torchrun every process must call it)."""
        now = summed_over_processes([getattr(self.counter, c, 0) for c in COUNTS])
        return {c: self.restored[c] + n for c, n in zip(COUNTS, now)}

    def mean_loss(self, output) -> float:
        """Training loss per step over the whole run; `output.training_loss` (the Trainer's) covers only the steps
        trained since the resume."""
        steps = output.global_step - self.first_step
        if steps <= 0:
            return output.training_loss
        return (self.restored_loss_sum + output.training_loss * (output.global_step - self.resumed_step)) / steps


def run_totals(trainer, counter) -> RunTotals:
    """The trainer's whole-run totals, counted by `counter` (added as a callback, after the Trainer's own)."""
    totals = RunTotals(counter)
    trainer.add_callback(totals)
    return totals
