"""Loading, validating and tokenizing training data."""
