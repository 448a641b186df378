"""Task data: TFDS builders, few-shot prompt rendering, finetuning subsets, pretraining-loss corpus."""
