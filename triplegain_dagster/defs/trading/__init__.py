"""The tables the executor writes (orders, fills, positions, risk checks...), as external assets."""
