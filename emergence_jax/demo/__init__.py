"""`emergence-jax demo`: the method end to end on one CPU (ladder, few-shot, finetuning sweep, fit, report)."""
