"""Reports: markdown tables and charts of holdings, allocation and equity."""
