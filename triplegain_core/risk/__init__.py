"""The risk rules: the product's promise, never bypassed by any model output."""
