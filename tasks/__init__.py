"""Prefect tasks: thin, typed wrappers over llm_finetune, one retryable unit each."""
