"""Importers: evaluation results people already hold (lm-evaluation-harness output) -> results records."""
