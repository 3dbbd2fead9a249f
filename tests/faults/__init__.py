"""Fault-injection suite: each test injects one fault into a real stack and records its figures."""
