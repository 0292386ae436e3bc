"""Instruction-following probes: verifiable checks (IFEval style), a probe suite file with prompt variants, the
chat models under test, and pass rates per check type x variant x model."""
