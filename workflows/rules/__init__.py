"""Care-plan threshold rules: a care program as data and its evaluation."""
