"""Conveyor's benchmark suite: Conveyor and its Python peers, side by side on one Redis."""
