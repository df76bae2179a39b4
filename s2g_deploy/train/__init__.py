"""Training: data, losses and metrics, and the S2G loop. Not imported by export, search or bench."""
