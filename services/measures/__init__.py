"""Measurement-based care: baseline, response, remission and reliable change of PHQ-9 / GAD-7."""
