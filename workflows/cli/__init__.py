"""The ``careloop`` command line: the administrative commands plus those that run workflows."""
