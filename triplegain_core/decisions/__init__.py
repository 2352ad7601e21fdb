"""Deliberated decisions: lifecycle, intake, hand-over, human approval and the confirmation gate."""
