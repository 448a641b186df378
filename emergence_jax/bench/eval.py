"""`emergence-jax bench eval`: multiple-choice scoring throughput beside transformers/PyTorch.

Both sides score the same requests (few-shot-sized contexts, each followed by its choices) with the
same random LLaMA checkpoint, on CPU, in this run. The reference scores the way lm-eval-harness
does with transformers: one right-padded row per (context, choice), batched. Ours is
`emergence_jax.evaluate.multiple_choice.score_requests`: jit-compiled, bucketed shapes, and the
shared context run once per prompt (one-token choices read from a single row, longer ones from the
context's KV cache); a third line turns the KV-cache reuse off to show what batching alone gives.
Throughput counts the same tokens on both sides: context + choice for every request, per second of
wall time; rounds are interleaved, with equal threads (`emergence_jax.bench.harness`).
"""

from __future__ import annotations

import argparse
import tempfile


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prompts", type=int, default=24, help="multiple-choice prompts per scenario")
    parser.add_argument("--context", type=int, default=384, help="mean context length in tokens (few-shot sized)")
    parser.add_argument("--hidden", type=int, default=256, help="model width")
    parser.add_argument("--layers", type=int, default=4, help="decoder layers")
    parser.add_argument("--vocab", type=int, default=4096, help="vocabulary size")
    parser.add_argument("--batch-size", type=int, default=8, help="rows per forward pass, both sides")
    parser.add_argument("--seed", type=int, default=0, help="seed for weights and token ids")


def _requests(rng, prompts: int, context: int, vocab: int, choice_lengths: tuple[int, int]):
    from emergence_jax.evaluate.multiple_choice import ScoreRequest

    requests = []
    for _ in range(prompts):
        length = int(rng.integers(context * 3 // 4, context * 5 // 4))
        ctx = tuple(int(t) for t in rng.integers(1, vocab, size=length))
        if choice_lengths == (1, 1):
            choices = [(int(t),) for t in rng.choice(vocab - 1, size=4, replace=False) + 1]
        else:
            choices = [tuple(int(t) for t in rng.integers(1, vocab, size=int(rng.integers(*choice_lengths)))) for _ in range(4)]
        requests.extend(ScoreRequest(ctx, c) for c in choices)
    return requests


def _reference_scores(torch_model, requests, batch_size: int) -> list[float]:
    import torch

    scores = []
    with torch.inference_mode():
        for start in range(0, len(requests), batch_size):
            batch = requests[start : start + batch_size]
            rows = [list(r.context + r.continuation)[:-1] for r in batch]
            width = max(len(r) for r in rows)
            tokens = torch.zeros((len(rows), width), dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for b, row in enumerate(rows):
                tokens[b, : len(row)] = torch.tensor(row)
                mask[b, : len(row)] = 1
            log_probs = torch.log_softmax(torch_model(input_ids=tokens, attention_mask=mask).logits.float(), dim=-1)
            for b, request in enumerate(batch):
                n, m = len(request.context), len(request.continuation)
                targets = torch.tensor(request.continuation)
                picked = log_probs[b, n - 1 : n - 1 + m].gather(-1, targets[:, None])
                scores.append(float(picked.sum()))
    return scores


def measure(args: argparse.Namespace, bench) -> None:
    import numpy as np
    import torch
    import transformers

    from emergence_jax.bench.harness import set_torch_threads
    from emergence_jax.checkpoints.hf import load_hf_model
    from emergence_jax.evaluate.multiple_choice import score_requests
    from emergence_jax.evaluate.scoring import PureLanguageModel, QueryScorer, pure_language_model

    set_torch_threads(bench.threads)
    torch.manual_seed(args.seed)
    max_length = 2 * args.context + 64
    hf_config = transformers.LlamaConfig(
        vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=args.hidden * 11 // 4,
        num_hidden_layers=args.layers, num_attention_heads=max(1, args.hidden // 64), max_position_embeddings=max_length,
        tie_word_embeddings=False,
    )
    torch_model = transformers.LlamaForCausalLM(hf_config).eval()
    with tempfile.TemporaryDirectory() as folder:
        torch_model.save_pretrained(folder)
        model = load_hf_model(folder, progress=False)
    pure = pure_language_model(model)
    scorer = QueryScorer(pure)
    row_per_choice_scorer = QueryScorer(PureLanguageModel(pure.apply, pure.params))
    rng = np.random.default_rng(args.seed)
    multi_token = _requests(rng, args.prompts, args.context, args.vocab, (2, 9))
    scenarios = {
        "one-token choices (MMLU-like)": (_requests(rng, args.prompts, args.context, args.vocab, (1, 1)), scorer),
        "2-8 token choices": (multi_token, scorer),
        "2-8 token, no KV-cache reuse": (multi_token, row_per_choice_scorer),
    }
    bench.say(f"LLaMA hidden={args.hidden} layers={args.layers} vocab={args.vocab}; {args.prompts} prompts x 4 choices; "
              f"context ~{args.context} tokens; batch {args.batch_size}")
    for name, (requests, scorer) in scenarios.items():
        tokens = sum(len(r.context) + len(r.continuation) for r in requests)
        measured = bench.compare(
            name, "tokens/s", tokens,
            lambda requests=requests, scorer=scorer: score_requests(scorer, requests, max_length=max_length, batch_size=args.batch_size),
            lambda requests=requests: _reference_scores(torch_model, requests, args.batch_size),
        )
        if bench.no_reference:
            continue
        ours = score_requests(scorer, requests, max_length=max_length, batch_size=args.batch_size)
        reference = _reference_scores(torch_model, requests, args.batch_size)
        measured.extra["max_abs_logprob_difference"] = float(np.max(np.abs(np.array([s.logprob for s in ours]) - np.array(reference))))
