"""Bridges from flowlab to training libraries. Each is its own module, imported only when asked for, so that
importing flowlab never imports a deep-learning framework."""
