"""One decision per speech hop: the loop, its face stage, budget, fusion, smoothing, and the
appliance that wires sources, models and outputs together."""
