"""SMART App Launch: clinicians open careloop from inside the EHR."""
