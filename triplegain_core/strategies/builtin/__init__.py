"""The built-in strategies: every public module here is discovered and validated on load."""
