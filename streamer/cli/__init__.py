"""The ``triplegain`` command, one module per command group."""
