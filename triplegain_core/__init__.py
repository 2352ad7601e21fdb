"""TripleGain domain core: pure trading logic plus storage and cache adapters."""
