"""The Redis half of the meeting place: versioned stream and key contracts."""
