"""emergence_jax: predict when an LLM capability will emerge, by finetuning pre-emergence checkpoints.

Method: Snell, Wallace, Klein, Levine (2024), "Predicting Emergent Capabilities by Finetuning".
"""

__version__ = "0.1.0"
