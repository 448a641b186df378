"""Sweeps: a grid of checkpoints × tasks × finetuning amounts × seeds × shots run as resumable
jobs (`emergence-jax sweep`), with results appended to one records file, local or on a bucket."""
