"""Instruction-following probes: verifiable checks (IFEval style), a probe suite file with prompt variants, the
chat models under test, and pass rates per check type x variant x model."""

from pathlib import Path

DEFAULT_SUITE = Path(__file__).resolve().parent / "suites" / "instruction_following.yaml"
