"""DIMSE services: the SCP modalities push to, and outbound SCU."""
