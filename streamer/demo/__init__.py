"""The demo: the whole loop end to end on real servers, with deliberation on the market's clock."""
