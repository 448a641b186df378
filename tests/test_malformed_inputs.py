"""Malformed inputs through the real CLI: every results file, config and model folder below gives
exactly one stderr line `error: ...` naming the cause, exit code 2, no traceback and no hang."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from emergence_jax.cli import main
from emergence_jax.errors import UserError

HEADER = "model,pretrain_loss,train_examples,shots,accuracy,n_eval,chance"
OK = "m@1,2.5,0,5,0.25,100,0.25"
GOOD = {"model": "m@1", "pretrain_loss": 2.5, "train_examples": 0, "shots": 5, "accuracy": 0.25, "n_eval": 100, "chance": 0.25}


def csv_text(*lines):
    return ("\n".join(lines) + "\n").encode("utf-8")


def jsonl(*rows):
    return "".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows).encode("utf-8")


def row_with(column, value):
    """A CSV row of OK with one column replaced by the raw text `value`."""
    fields = OK.split(",")
    fields[HEADER.split(",").index(column)] = value
    return ",".join(fields)


# name -> (file name, bytes, phrase the message must contain)
RESULTS = {
    "latin1": ("r.csv", (HEADER + "\ncaf\xe9@1,2.5,0,5,0.25,100,0.25\n").encode("latin-1"), "not UTF-8"),
    "utf16_csv": ("r.csv", (HEADER + "\n" + OK + "\n").encode("utf-16"), "UTF-16"),
    "utf16_jsonl": ("r.jsonl", json.dumps(GOOD).encode("utf-16"), "UTF-16"),
    "nul_byte": ("r.csv", csv_text(HEADER, OK.replace("m@1", "m\x00")), "NUL"),
    "n_eval_inf": ("r.csv", csv_text(HEADER, row_with("n_eval", "inf")), "infinite"),
    "n_eval_1e400": ("r.csv", csv_text(HEADER, row_with("n_eval", "1e400")), "infinite"),
    "n_eval_400_digits": ("r.csv", csv_text(HEADER, row_with("n_eval", "9" * 400)), "2^53"),
    "n_eval_nan": ("r.csv", csv_text(HEADER, row_with("n_eval", "nan")), "NaN"),
    "n_eval_negative": ("r.csv", csv_text(HEADER, row_with("n_eval", "-5")), "outside"),
    "n_eval_zero": ("r.csv", csv_text(HEADER, row_with("n_eval", "0")), "outside"),
    "n_eval_fraction": ("r.csv", csv_text(HEADER, row_with("n_eval", "10.5")), "whole number"),
    "n_eval_beyond_2_53": ("r.csv", csv_text(HEADER, row_with("n_eval", str(2**53 + 2))), "2^53"),
    "seed_beyond_2_53_jsonl": ("r.jsonl", jsonl({**GOOD, "seed": 2**60}), "2^53"),
    "seed_fraction_jsonl": ("r.jsonl", jsonl({**GOOD, "seed": 1.5}), "whole number"),
    "unicode_digits": ("r.csv", csv_text(HEADER, row_with("n_eval", "\u0661\u0662")), "expected a number"),
    "underscore_number": ("r.csv", csv_text(HEADER, row_with("pretrain_loss", "1_000")), "expected a number"),
    "model_over_128kb": ("r.csv", csv_text(HEADER, OK.replace("m@1", "m" * 200_000)), "longer than"),
    "extra_field_over_128kb_jsonl": ("r.jsonl", jsonl({**GOOD, "note": "x" * 200_000}), "longer than"),
    "deeply_nested_jsonl": ("r.jsonl", b"[" * 100_000 + b"]" * 100_000 + b"\n", "nested deeper"),
    "nested_value_jsonl": ("r.jsonl", jsonl('{"model": "m", "note": ' + "[" * 20 + "]" * 20 + "}"), "nested deeper"),
    "pretrain_loss_inf": ("r.csv", csv_text(HEADER, row_with("pretrain_loss", "inf")), "infinite"),
    "pretrain_loss_minus_inf": ("r.csv", csv_text(HEADER, row_with("pretrain_loss", "-Infinity")), "infinite"),
    "pretrain_loss_nan": ("r.csv", csv_text(HEADER, row_with("pretrain_loss", "NaN")), "NaN"),
    "pretrain_loss_1e999": ("r.csv", csv_text(HEADER, row_with("pretrain_loss", "1e999")), "infinite"),
    "pretrain_loss_negative": ("r.csv", csv_text(HEADER, row_with("pretrain_loss", "-1")), "outside"),
    "pretrain_loss_text": ("r.csv", csv_text(HEADER, row_with("pretrain_loss", "abc")), "expected a number"),
    "pretrain_loss_infinity_jsonl": ("r.jsonl", jsonl('{"model": "m", "pretrain_loss": Infinity}'), "not a JSON number"),
    "nan_literal_jsonl": ("r.jsonl", jsonl('{"model": "m", "pretrain_loss": NaN}'), "not a JSON number"),
    "1e400_jsonl": ("r.jsonl", jsonl('{"model": "m", "pretrain_loss": 1e400}'), "too large"),
    "huge_integer_jsonl": ("r.jsonl", jsonl('{"model": "m", "n_eval": ' + "9" * 5000 + "}"), "digits"),
    "duplicate_column": ("r.csv", csv_text(HEADER + ",accuracy", OK + ",0.5"), "appears twice"),
    "duplicate_column_after_strip": ("r.csv", csv_text(HEADER + ", model", OK + ",m2"), "appears twice"),
    "duplicate_key_jsonl": ("r.jsonl", jsonl('{"model": "m", "accuracy": 0.1, "accuracy": 0.9}'), "appears twice"),
    "duplicate_key_after_strip_jsonl": ("r.jsonl", jsonl(json.dumps(GOOD)[:-1] + ', " model": "x"}'), "appears twice"),
    "accuracy_not_a_count": ("r.csv", csv_text(HEADER, row_with("accuracy", "0.05").replace(",100,", ",10,")), "not a whole number of correct"),
    "accuracy_above_1": ("r.csv", csv_text(HEADER, row_with("accuracy", "1.5")), "outside"),
    "accuracy_negative": ("r.csv", csv_text(HEADER, row_with("accuracy", "-0.1")), "outside"),
    "accuracy_blank": ("r.csv", csv_text(HEADER, row_with("accuracy", "  ")), "missing required value"),
    "accuracy_bool_jsonl": ("r.jsonl", jsonl({**GOOD, "accuracy": True}), "expected a number"),
    "accuracy_list_jsonl": ("r.jsonl", jsonl({**GOOD, "accuracy": [0.5]}), "expected a number"),
    "n_eval_text_jsonl": ("r.jsonl", jsonl({**GOOD, "n_eval": "abc"}), "expected a number"),
    "chance_above_1": ("r.csv", csv_text(HEADER, row_with("chance", "1.2")), "outside"),
    "chance_negative": ("r.csv", csv_text(HEADER, row_with("chance", "-0.5")), "outside"),
    "brier_above_2": ("r.jsonl", jsonl({**GOOD, "brier": 3}), "outside"),
    "logprob_positive": ("r.jsonl", jsonl({**GOOD, "logprob": 0.5}), "outside"),
    "train_examples_fraction": ("r.csv", csv_text(HEADER, row_with("train_examples", "1.5")), "whole number"),
    "shots_negative": ("r.csv", csv_text(HEADER, row_with("shots", "-1")), "outside"),
    "model_empty": ("r.csv", csv_text(HEADER, row_with("model", "")), "missing required value"),
    "model_control_char": ("r.jsonl", jsonl({**GOOD, "model": "m\x01"}), "control character"),
    "model_null_jsonl": ("r.jsonl", jsonl({**GOOD, "model": None}), "missing required value"),
    "row_is_list_jsonl": ("r.jsonl", jsonl("[1, 2]"), "expected a JSON object"),
    "row_is_string_jsonl": ("r.jsonl", jsonl('"model"'), "expected a JSON object"),
    "empty_object_jsonl": ("r.jsonl", jsonl("{}"), "missing required value"),
    "invalid_json_line": ("r.jsonl", jsonl(GOOD, "{oops", GOOD), "line 2: not valid JSON"),
    "trailing_garbage_jsonl": ("r.jsonl", jsonl(json.dumps(GOOD) + " x", GOOD), "line 1: not valid JSON"),
    "empty_file": ("r.csv", b"", "empty"),
    "whitespace_only": ("r.csv", b"  \n\n \n", "empty"),
    "header_only": ("r.csv", csv_text(HEADER), "no rows"),
    "missing_column": ("r.csv", csv_text(HEADER.rsplit(",", 1)[0], OK.rsplit(",", 1)[0]), "missing required column 'chance'"),
    "bom_and_missing_column": ("r.csv", b"\xef\xbb\xbf" + csv_text(HEADER.rsplit(",", 1)[0], OK.rsplit(",", 1)[0]), "column 'chance'"),
    "empty_column_name": ("r.csv", csv_text(HEADER + ",", OK + ","), "empty column name"),
    "more_fields_than_header": ("r.csv", csv_text(HEADER, OK + ",7", OK), "line 2: 8 fields"),
    "fewer_fields_than_header": ("r.csv", csv_text(HEADER, "m@1,2.5,0,5", OK), "line 2: 4 fields"),
    "unclosed_quote": ("r.csv", csv_text(HEADER, '"m@1,2.5,0,5,0.25,100,0.25', OK), "never closed"),
    "conflicting_duplicate": ("r.csv", csv_text(HEADER, OK, row_with("accuracy", "0.3")), "duplicate of the row"),
    "conflict_after_whitespace_strip": ("r.csv", csv_text(HEADER, OK, row_with("model", " m@1 ").replace("0.25,100", "0.3,100")), "duplicate of the row"),
    "unknown_suffix": ("r.txt", csv_text(HEADER, OK), "unknown results format"),
    "crlf_line_number": ("r.csv", f"{HEADER}\r\n{OK}\r\n{row_with('accuracy', '2')}\r\n".encode(), "line 3, column 'accuracy'"),
    "quoted_newline_in_value": ("r.csv", csv_text(HEADER + ",note", OK + ",x", row_with("model", "m2") + ',"two\nlines"'), "line 3, column 'note': value 'two\\nlines' holds a control character"),
    "blank_lines_line_number": ("r.csv", csv_text(HEADER, "", OK, "", row_with("shots", "x")), "line 5, column 'shots'"),
}


def _special_results(tmp_path):
    """Results paths that are not plain files with content."""
    folder = tmp_path / "x.csv"
    folder.mkdir()
    loop = tmp_path / "loop.csv"
    loop.symlink_to(loop)
    mem = tmp_path / "mem.csv"
    mem.symlink_to("/proc/self/mem")  # a regular file whose read fails (EIO), even for root
    return {
        "directory_named_csv": (folder, "is a folder"),
        "missing_file": (tmp_path / "absent.csv", "not found"),
        "symlink_loop": (loop, "cannot access"),
        "unreadable_proc_mem": (mem, "cannot read"),
    }


@pytest.fixture(scope="module", autouse=True)
def _imported():
    """Import the commands once, so first-import chatter never lands in a case's stderr."""
    import emergence_jax.evaluate.pretrain_loss_command  # noqa: F401
    import emergence_jax.laws.fit_command  # noqa: F401
    import emergence_jax.train.command  # noqa: F401


def _one_error_line(code, err, phrase):
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Traceback" not in err
    assert phrase in lines[0], lines[0]


def _fit(tmp_path, capsys, *paths):
    code = main(["fit", "--results", *map(str, paths), "--out", str(tmp_path / "fit_out")])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(RESULTS))
def test_malformed_results_file(tmp_path, capsys, name):
    file_name, content, phrase = RESULTS[name]
    path = tmp_path / file_name
    path.write_bytes(content)
    _one_error_line(*_fit(tmp_path, capsys, path), phrase)
    assert not (tmp_path / "fit_out").exists()


@pytest.mark.parametrize("name", ["directory_named_csv", "missing_file", "symlink_loop", "unreadable_proc_mem"])
def test_special_results_path(tmp_path, capsys, name):
    path, phrase = _special_results(tmp_path)[name]
    _one_error_line(*_fit(tmp_path, capsys, path), phrase)


def test_conflict_across_two_files(tmp_path, capsys):
    first, second = tmp_path / "a.csv", tmp_path / "b.jsonl"
    first.write_bytes(csv_text(HEADER, OK))
    second.write_bytes(jsonl({**GOOD, "accuracy": 0.5}))
    _one_error_line(*_fit(tmp_path, capsys, first, second), "duplicate of the row at")


def _drop_file_read_override():
    """Clear CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from this process's effective capabilities,
    so root is bound by file permissions like any user (capget/capset through ctypes)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = (ctypes.c_uint32 * 6)()  # two {effective, permitted, inheritable} words
    if libc.capget(header, data) != 0:
        raise OSError(ctypes.get_errno(), "capget")
    data[0] &= ~((1 << 1) | (1 << 2))
    if libc.capset(header, data) != 0:
        raise OSError(ctypes.get_errno(), "capset")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_unreadable_file_permission_denied(tmp_path):
    """chmod 000 (read by an unprivileged child when the tests run as root)."""
    path = tmp_path / "secret.csv"
    path.write_bytes(csv_text(HEADER, OK))
    path.chmod(0)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: drop root, run the CLI with stderr into the pipe
        try:
            sys.stderr = open(write_end, "w", closefd=False)
            if os.getuid() == 0:
                _drop_file_read_override()
            code = main(["fit", "--results", str(path), "--out", "/nonexistent/out"])
            sys.stderr.flush()
            os._exit(code)
        except BaseException:
            import traceback

            traceback.print_exc()
            sys.stderr.flush()
            os._exit(99)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        err = pipe.read()
    _, status = os.waitpid(pid, 0)
    _one_error_line(os.waitstatus_to_exitcode(status), err, "permission denied")


@pytest.mark.parametrize("kind", ["fifo", "dev_zero"])
def test_fifo_and_dev_zero_refused_without_hanging(tmp_path, kind):
    path = tmp_path / "r.csv"
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to("/dev/zero")
    result = subprocess.run(
        [sys.executable, "-m", "emergence_jax.cli", "fit", "--results", str(path), "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120,
    )
    _one_error_line(result.returncode, result.stderr, "FIFO" if kind == "fifo" else "a device")


# ---------------------------------------------------------------------------------------------------
# Configs, through `emergence-jax finetune --config`

CONFIGS = {
    "learning_rate_nan": ("optim: {learning_rate: .nan}\n", [], "optim.learning_rate must be a finite number"),
    "learning_rate_negative": ("optim: {learning_rate: -1}\n", [], "optim.learning_rate = -1.0 is outside (0.0, 1.0]"),
    "warmup_fraction_7": ("optim: {warmup_fraction: 7}\n", [], "optim.warmup_fraction = 7.0 is outside"),
    "eps_negative": ("optim: {eps: -1}\n", [], "optim.eps = -1.0 is outside"),
    "batch_size_nan": ("optim: {batch_size: .nan}\n", [], "optim.batch_size must be a finite integer"),
    "batch_size_1e400": ("optim: {batch_size: 1.0e+400}\n", [], "optim.batch_size must be a finite integer"),
    "batch_size_bool": ("optim: {batch_size: true}\n", [], "optim.batch_size must be an integer"),
    "b2_one": ("optim: {b2: 1.0}\n", [], "optim.b2 = 1.0 is outside"),
    "max_grad_norm_negative": ("optim: {max_grad_norm: -0.5}\n", [], "optim.max_grad_norm"),
    "mesh_zero": ("mesh: {data: 0}\n", [], "mesh.data = 0 is outside"),
    "lora_rank_zero": ("lora: {rank: 0}\n", [], "lora.rank = 0 is outside"),
    "shots_negative": ("eval: {shots: [0, -1]}\n", [], "eval.shots = -1 is outside"),
    "eval_limit_zero": ("eval: {limit: 0}\n", [], "eval.limit = 0 is outside"),
    "num_examples_negative": ("data: {num_examples: -5}\n", [], "data.num_examples = -5 is outside"),
    "seed_beyond_2_53": ("seed: 100000000000000000000\n", [], "beyond 2^53"),
    "deep_nesting": ("optim: " + "[" * 5000 + "]" * 5000 + "\n", [], "nested"),
    "alias_bomb": ("a: &a [1,1,1,1,1,1,1,1,1,1]\n" + "".join(f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n" for p, c in zip("abcdefg", "bcdefgh")), [], "more than"),
    "top_level_list": ("- optim\n- data\n", [], "top level must be a mapping"),
    "top_level_scalar": ("42\n", [], "top level must be a mapping"),
    "unknown_key": ("optim: {learnin_rate: 0.1}\n", [], "unknown key optim.learnin_rate"),
    "section_not_mapping": ("optim: 3\n", [], "optim. must be a mapping"),
    "invalid_yaml": ("optim: [1, 2\n", [], "not valid YAML"),
    "override_inf": ("", ["optim.learning_rate=.inf"], "optim.learning_rate must be a finite number"),
    "override_not_a_section": ("seed: 3\n", ["seed.x=1"], "seed is not a section"),
}


def _finetune(tmp_path, capsys, text, overrides):
    path = tmp_path / "finetune.yaml"
    path.write_text(text)
    code = main(["finetune", "--config", str(path), *[arg for item in overrides for arg in ("--set", item)]])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_malformed_config(tmp_path, capsys, name):
    text, overrides, phrase = CONFIGS[name]
    _one_error_line(*_finetune(tmp_path, capsys, text, overrides), phrase)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["finetune.yaml"], "nothing may be written"


@pytest.mark.parametrize("kind, phrase", [("latin1", "not UTF-8"), ("folder", "is a folder"), ("missing", "not found")])
def test_unreadable_config_files(tmp_path, capsys, kind, phrase):
    path = tmp_path / "c.yaml"
    if kind == "latin1":
        path.write_bytes("run_dir: caf\xe9\n".encode("latin-1"))
    elif kind == "folder":
        path.mkdir()
    code = main(["finetune", "--config", str(path)])
    _one_error_line(code, capsys.readouterr().err, phrase)


# ---------------------------------------------------------------------------------------------------
# Model folders, through `emergence-jax pretrain-loss --model`

TINY = {
    "model_type": "llama", "vocab_size": 128, "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 4, "max_position_embeddings": 128, "bos_token_id": 1, "eos_token_id": 2,
}


def _text(obj):
    return json.dumps(obj).encode()


# name -> ({file name: bytes}, phrase)
MODEL_FOLDERS = {
    "config_is_list": ({"config.json": b"[1, 2]"}, "got a list"),
    "config_is_string": ({"config.json": b'"llama"'}, "got a str"),
    "config_invalid_json": ({"config.json": b'{"model_type": "llama",'}, "not valid JSON"),
    "config_nan_literal": ({"config.json": _text(TINY)[:-1] + b', "rms_norm_eps": NaN}'}, "not a JSON number"),
    "config_duplicate_key": ({"config.json": _text(TINY)[:-1] + b', "vocab_size": 7}'}, "appears twice"),
    "config_deeply_nested": ({"config.json": b'{"x": ' + b"[" * 10000 + b"]" * 10000 + b"}"}, "nested deeper"),
    "config_utf16": ({"config.json": json.dumps(TINY).encode("utf-16")}, "UTF-16"),
    "heads_zero": ({"config.json": _text({**TINY, "num_attention_heads": 0})}, "num_attention_heads = 0 is outside"),
    "layers_1e9": ({"config.json": _text({**TINY, "num_hidden_layers": 1e9})}, "num_hidden_layers = 1000000000.0 is outside"),
    "hidden_negative": ({"config.json": _text({**TINY, "hidden_size": -64})}, "hidden_size = -64 is outside"),
    "vocab_fraction": ({"config.json": _text({**TINY, "vocab_size": 1.5})}, "vocab_size must be a whole number"),
    "vocab_bool": ({"config.json": _text({**TINY, "vocab_size": True})}, "vocab_size must be a number"),
    "too_many_parameters": ({"config.json": _text({**TINY, "hidden_size": 65536, "intermediate_size": 262144, "num_hidden_layers": 4096, "num_attention_heads": 512, "num_key_value_heads": 512})}, "parameters"),
    "heads_do_not_divide": ({"config.json": _text({**TINY, "num_attention_heads": 5, "num_key_value_heads": 5})}, "not a multiple of num_attention_heads"),
    "norm_eps_negative": ({"config.json": _text({**TINY, "rms_norm_eps": -1})}, "rms_norm_eps = -1 is outside"),
    "tie_embeddings_string": ({"config.json": _text({**TINY, "tie_word_embeddings": "yes"})}, "must be true or false"),
    "rope_factor_zero": ({"config.json": _text({**TINY, "rope_scaling": {"rope_type": "linear", "factor": 0}})}, "rope_scaling.factor"),
    "unknown_model_type": ({"config.json": _text({**TINY, "model_type": "mamba"})}, "model_type 'mamba' is not supported"),
    "missing_vocab_size": ({"config.json": _text({k: v for k, v in TINY.items() if k != "vocab_size"})}, "required field 'vocab_size'"),
    "eos_outside_vocabulary": ({"config.json": _text({**TINY, "eos_token_id": 500})}, "eos_token_id 500 is outside the vocabulary"),
    "eos_list_outside_vocabulary": ({"config.json": _text({**TINY, "eos_token_id": [2, 128]})}, "eos_token_id 128 is outside"),
    "bos_is_string": ({"config.json": _text({**TINY, "bos_token_id": "1"})}, "bos_token_id must be a token id"),
    "tokenizer_config_is_list": ({"config.json": _text(TINY), "tokenizer_config.json": b'["<s>"]'}, "got a list"),
    "special_tokens_map_is_string": ({"config.json": _text(TINY), "special_tokens_map.json": b'"</s>"'}, "got a str"),
    "tokenizer_config_duplicate_key": ({"config.json": _text(TINY), "tokenizer_config.json": b'{"eos_token": "a", "eos_token": "b"}'}, "appears twice"),
}


def _word_tokenizer(size):
    """A tokenizer.json with `size` tokens t0..t{size-1} plus <s>=size, </s>=size+1."""
    tokenizers = pytest.importorskip("tokenizers")
    vocab = {f"t{i}": i for i in range(size)} | {"<s>": size, "</s>": size + 1}
    tokenizer = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="t0"))
    tokenizer.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    return tokenizer.to_str().encode()


def _pretrain_loss(tmp_path, capsys, folder):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("t1 t2 t3\n")
    code = main(["pretrain-loss", "--model", str(folder), "--corpus", str(corpus), "--out", str(tmp_path / "loss.json")])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(MODEL_FOLDERS))
def test_malformed_model_folder(tmp_path, capsys, name):
    files, phrase = MODEL_FOLDERS[name]
    folder = tmp_path / "model"
    folder.mkdir()
    for file_name, content in files.items():
        (folder / file_name).write_bytes(content)
    _one_error_line(*_pretrain_loss(tmp_path, capsys, folder), phrase)
    assert not (tmp_path / "loss.json").exists()


@pytest.mark.parametrize("case", ["tokenizer_eos_beyond_model_vocab", "missing_folder", "config_is_folder"])
def test_model_folder_layouts(tmp_path, capsys, case):
    folder = tmp_path / "model"
    if case == "tokenizer_eos_beyond_model_vocab":
        folder.mkdir()
        (folder / "config.json").write_bytes(_text({**TINY, "bos_token_id": None, "eos_token_id": None}))
        (folder / "tokenizer.json").write_bytes(_word_tokenizer(200))  # </s> = 201 >= the model's 128 rows
        (folder / "tokenizer_config.json").write_bytes(_text({"eos_token": "</s>"}))
        phrase = "eos_token id 201 is outside the vocabulary (size 128)"
    elif case == "missing_folder":
        phrase = "no such checkpoint folder"
    else:
        folder.mkdir()
        (folder / "config.json").mkdir()
        phrase = "config.json not found"
    _one_error_line(*_pretrain_loss(tmp_path, capsys, folder), phrase)


def test_nan_pretraining_loss_is_an_error_naming_nan_weights():
    """NaN weights give NaN log-probabilities: refused where the loss is computed, never written."""
    from emergence_jax.evaluate.pretrain_loss import pretrain_loss

    def nan_scorer(tokens, positions, targets):
        return np.full(targets.shape, np.nan, dtype=np.float32), None

    with pytest.raises(UserError, match="weights most likely hold NaN"):
        pretrain_loss(nan_scorer, np.ones((2, 8), dtype=np.int32))


def test_counts_of_the_suite():
    """The issue asks for at least 60 results files, 15 configs and 15 model folders."""
    assert len(RESULTS) + 4 + 1 + 1 + 2 >= 60
    assert len(CONFIGS) + 3 >= 15
    assert len(MODEL_FOLDERS) + 3 >= 15
