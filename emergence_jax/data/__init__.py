"""Task data: TFDS builders, few-shot prompt rendering, finetuning subsets, pretraining-loss corpus.

- `builders/`: TFDS builders (array_record files, read without TensorFlow) for MMLU, GSM8K,
  CommonsenseQA, CoLA and APPS, from a local folder of the original files or by download;
  `emergence-jax prepare-data` runs them.
- `tasks`: the `TASKS` registry, `eval_prompts` and `finetune_examples` (seeded, nested subsets).
- `rendering`: the prompt formats (Hendrycks MMLU, lm-eval-harness, APPS paper).
- `prompts`: the prompt dataclasses evaluation and finetuning consume.
- `gsm8k_answers`: final-answer extraction and number normalisation for GSM8K.
- `corpus`: the held-out pretraining-loss corpus, tokenized and packed.
"""
