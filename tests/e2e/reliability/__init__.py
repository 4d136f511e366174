"""Delivery under load: backpressure, slow subscribers, the connection cap, frames written together."""
