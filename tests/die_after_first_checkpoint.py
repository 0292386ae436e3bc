"""Run a training entry module (`python tests/die_after_first_checkpoint.py MODULE ARGS...`) that SIGKILLs itself
right after its first checkpoint is saved: a kill at a known point, however fast the machine trains."""

import os
import runpy
import signal
import sys

from transformers import Trainer

_save_checkpoint = Trainer._save_checkpoint


def _save_then_die(self, *args, **kwargs):
    _save_checkpoint(self, *args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    sys.path[0] = os.getcwd()  # as `python -m` would have it, instead of this script's folder
    Trainer._save_checkpoint = _save_then_die
    module, sys.argv = sys.argv[1], [sys.argv[1], *sys.argv[2:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
