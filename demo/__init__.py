"""``make demo``: the whole of BitWrk on one machine (``python -m demo.run``)."""
