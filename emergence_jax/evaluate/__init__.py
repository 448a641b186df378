"""Evaluation: log-likelihood scoring of multiple choice, greedy generation with answer extraction,
pretraining loss, and a sandbox for running generated programs. Every evaluation ends in rows of
the results record (`emergence_jax.records`)."""
