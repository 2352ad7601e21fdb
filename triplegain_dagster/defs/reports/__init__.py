"""Reports: the portfolio report."""
