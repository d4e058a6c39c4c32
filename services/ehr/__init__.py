"""EHR connections: linking patients, writing data in, reading care plans out."""
