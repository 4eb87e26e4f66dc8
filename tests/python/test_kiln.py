"""The Python package kiln (python/, docs/python.md) against the kiln command line on the
same files: init, run, grad, train, tokenize and the safetensors functions bitwise; bad
inputs raise kiln.Error with the command's message; 1,000 runs leak no references and no
memory. Tiny VisualBERT configs, so that it takes seconds.

usage: KILN=build/kiln PYTHONPATH=build/python python3 tests/python/test_kiln.py
(meson test -C build --suite python sets both)."""

import gc
import os
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
import unittest

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "parity"))
import safetensors_io  # noqa: E402  an independent reader and writer

import kiln  # noqa: E402

KILN = os.environ.get("KILN", os.path.join(ROOT, "build", "kiln"))
VQA = os.path.join(ROOT, "models", "visualbert-vqa.json")
TINY = {"hidden": 16, "layers": 1, "heads": 2, "intermediate": 32, "vocab": 30, "visual_dim": 12,
        "text_len": 5, "regions": 4, "max_positions": 8, "batch": 2, "num_labels": 6}
SETS = [a for k, v in TINY.items() for a in ("--set", f"{k}={v}")]
THREADS = 2  # the same on both sides (the command line's default reads the environment)


def cli(*args, ok=True):
    """Runs the kiln binary; returns (exit code, stderr)."""
    p = subprocess.run([KILN, *args], capture_output=True, text=True)
    if ok and p.returncode != 0:
        raise AssertionError(f"kiln {' '.join(args)}: exit {p.returncode}\n{p.stderr}")
    return p.returncode, p.stderr


def cli_message(*args):
    """The message of a command that fails with exit 1, without "kiln: "."""
    rc, err = cli(*args, ok=False)
    assert rc == 1, f"exit {rc}: {err}"
    line = err.strip().splitlines()[-1]
    assert line.startswith("kiln: "), line
    return line[len("kiln: "):]


def inputs_of(model, seed, examples=None):
    """Random inputs for the model's input shapes (examples: a data file's leading dim)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, (shape, dtype) in model.inputs.items():
        if examples:
            shape = (examples,) + shape[1:]
        if name.endswith("mask"):  # full masks: the VQA head pools at the last real token
            out[name] = np.ones(shape, np.float32)
        elif dtype == "f32":
            out[name] = rng.random(shape, dtype=np.float32)
        else:  # ids and types: 0 and 1 are valid for every id input
            out[name] = rng.integers(0, 2, shape).astype(np.int64)
    return out


def same_bits(test, want, got):
    test.assertEqual(sorted(want), sorted(got))
    for k in want:
        test.assertEqual(want[k].dtype, got[k].dtype, k)
        test.assertEqual(want[k].shape, got[k].shape, k)
        test.assertEqual(want[k].tobytes(), got[k].tobytes(), f"{k} differs")


class Base(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.TemporaryDirectory()
        cls.tmp = cls.dir.name
        cls.model = kiln.Model(VQA, set=TINY, threads=THREADS)

    @classmethod
    def tearDownClass(cls):
        cls.dir.cleanup()

    def path(self, name):
        return os.path.join(self.tmp, name)


class TestModel(Base):
    def test_describes_inputs_outputs_params(self):
        m = self.model
        self.assertEqual(m.inputs["input_ids"], ((2, 5), "i64"))
        self.assertEqual(m.inputs["visual_embeds"], ((2, 4, 12), "f32"))
        self.assertEqual(m.outputs["logits"], ((2, 6), "f32"))
        self.assertEqual(m.params["visual_bert.embeddings.word_embeddings.weight"], ((30, 16), "f32"))

    def test_init_equals_kiln_init(self):
        cli("init", VQA, "-o", self.path("w.safetensors"), "--seed", "3", *SETS)
        self.model.init(seed=3)
        same_bits(self, safetensors_io.read(self.path("w.safetensors")), self.model.weights())

    def test_run_equals_kiln_run(self):
        m = self.model
        cli("init", VQA, "-o", self.path("w.safetensors"), "--seed", "4", *SETS)
        ins = inputs_of(m, 1)
        safetensors_io.write(self.path("in.safetensors"), ins)
        cli("run", VQA, "--weights", self.path("w.safetensors"), "--inputs", self.path("in.safetensors"),
            "-o", self.path("out.safetensors"), "--threads", str(THREADS), *SETS)
        m.load_weights(self.path("w.safetensors"))
        # ids as int8, as the command line converts them: the same values, the same outputs
        small = dict(ins, input_ids=ins["input_ids"].astype(np.int8),
                     token_type_ids=ins["token_type_ids"].astype(np.uint16))
        same_bits(self, safetensors_io.read(self.path("out.safetensors")), m.run(small))
        # weights from a dict, and a non-contiguous float input: the same again
        m.load_weights(safetensors_io.read(self.path("w.safetensors")))
        strided = np.asfortranarray(ins["visual_embeds"])
        self.assertFalse(strided.flags.c_contiguous)
        same_bits(self, safetensors_io.read(self.path("out.safetensors")), m.run(dict(ins, visual_embeds=strided)))

    def test_weights_from_a_path_are_held_once(self):
        # load_weights(path) keeps no copy of the file: a run's memory grows by the weights
        # once (kept or packed), not by the file, the parameters and the packed copies
        sets = dict(TINY, hidden=512, heads=4, intermediate=2048, layers=4, vocab=100)
        w = self.path("wm.safetensors")
        cli("init", VQA, "-o", w, "--seed", "5", *[a for k, v in sets.items() for a in ("--set", f"{k}={v}")])
        child = (
            "import resource, sys, numpy as np, kiln\n"
            f"m = kiln.Model({VQA!r}, set={sets!r}, threads={THREADS})\n"
            "ins = {n: (np.ones(s, np.float32) if d == 'f32' else np.zeros(s, np.int64)) for n, (s, d) in m.inputs.items()}\n"
            "before = int(open('/proc/self/statm').read().split()[1]) * resource.getpagesize()\n"
            f"m.load_weights({w!r})\n"
            "m.run(ins)\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before)\n")
        grew = int(subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, check=True).stdout)
        weights = os.path.getsize(w)
        self.assertLess(grew, 1.5 * weights, f"a run grew by {grew} bytes for {weights} bytes of weights")
        m = kiln.Model(VQA, set=sets, threads=THREADS)
        m.load_weights(w)  # read from the file when asked
        same_bits(self, safetensors_io.read(w), m.weights())

    def test_output_attentions_equal_kiln_run(self):
        cli("init", VQA, "-o", self.path("w.safetensors"), "--seed", "4", *SETS)
        m = kiln.Model(VQA, set=TINY, threads=THREADS, output_attentions=True)
        self.assertEqual(m.outputs["attentions.0"], ((2, 2, 9, 9), "f32"))
        ins = inputs_of(m, 1)
        safetensors_io.write(self.path("in.safetensors"), ins)
        cli("run", VQA, "--weights", self.path("w.safetensors"), "--inputs", self.path("in.safetensors"),
            "-o", self.path("att.safetensors"), "--threads", str(THREADS), "--output-attentions", *SETS)
        m.load_weights(self.path("w.safetensors"))
        got = m.run(ins)
        same_bits(self, safetensors_io.read(self.path("att.safetensors")), got)
        np.testing.assert_allclose(got["attentions.0"].sum(-1), 1, rtol=1e-5)
        self.assertNotIn("attentions.0", self.model.outputs)

    def check_precision_run(self, precision):  # Model(precision=P).run == kiln run --precision P
        cli("init", VQA, "-o", self.path("w.safetensors"), "--seed", "4", *SETS)
        m = kiln.Model(VQA, set=TINY, threads=THREADS, precision=precision)
        ins = inputs_of(m, 1)
        safetensors_io.write(self.path("in.safetensors"), ins)
        cli("run", VQA, "--weights", self.path("w.safetensors"), "--inputs", self.path("in.safetensors"),
            "-o", self.path("p.safetensors"), "--threads", str(THREADS), "--precision", precision, *SETS)
        m.load_weights(self.path("w.safetensors"))
        got = m.run(ins)
        same_bits(self, safetensors_io.read(self.path("p.safetensors")), got)
        self.model.load_weights(self.path("w.safetensors"))
        self.assertFalse(np.array_equal(got["logits"], self.model.run(ins)["logits"]), f"{precision} gave fp32's bits")
        if precision == "int8":  # inference only
            with self.assertRaisesRegex(kiln.Error, precision):
                m.grad(ins)
            return
        cli("grad", VQA, "--backend", "jit", "--weights", self.path("w.safetensors"), "--inputs",
            self.path("in.safetensors"), "-o", self.path("g16.safetensors"), "--seed", "7", "--threads",
            str(THREADS), "--precision", precision, *SETS)
        g = m.grad(ins, seed=7)
        same_bits(self, safetensors_io.read(self.path("g16.safetensors")), g)
        g32 = self.model.grad(ins, seed=7)
        self.assertFalse(np.array_equal(g["cls.weight"], g32["cls.weight"]), f"{precision} gave fp32's gradients")

    def test_bf16_run_equals_kiln_run_precision_bf16(self):
        self.check_precision_run("bf16")

    def test_int8_run_equals_kiln_run_precision_int8(self):
        self.check_precision_run("int8")

    def test_run_on_fewer_inputs_computes_what_they_allow(self):
        m = self.model
        m.init(seed=4)
        ins = inputs_of(m, 1)
        full = m.run(ins)
        del ins["labels"]
        part = m.run(ins)
        self.assertEqual(sorted(part), ["logits", "pooler_output"])
        self.assertEqual(full["logits"].tobytes(), part["logits"].tobytes())

    def test_grad_equals_kiln_grad(self):
        m = self.model
        cli("init", VQA, "-o", self.path("wg.safetensors"), "--seed", "5", *SETS)
        ins = inputs_of(m, 2)
        safetensors_io.write(self.path("ing.safetensors"), ins)
        cli("grad", VQA, "--backend", "jit", "--weights", self.path("wg.safetensors"), "--inputs",
            self.path("ing.safetensors"), "-o", self.path("g.safetensors"), "--seed", "7", "--threads",
            str(THREADS), *SETS)
        m.load_weights(self.path("wg.safetensors"))
        g = m.grad(ins, seed=7)
        same_bits(self, safetensors_io.read(self.path("g.safetensors")), g)
        self.assertEqual(g["loss"].shape, ())
        self.assertIn("visual_bert.embeddings.word_embeddings.weight", g)

    def test_reference_backend_agrees(self):
        ref = kiln.Model(VQA, set=TINY, backend="ref")
        self.model.init(seed=6)
        ref.init(seed=6)
        ins = inputs_of(ref, 3)
        a, b = self.model.run(ins), ref.run(ins)
        np.testing.assert_allclose(a["logits"], b["logits"], rtol=1e-4, atol=1e-5)


class TestErrors(Base):
    def test_error_is_a_value_error(self):
        self.assertTrue(issubclass(kiln.Error, ValueError))

    def test_bad_model_file_and_settings(self):
        with self.assertRaisesRegex(kiln.Error, "no-such.json"):
            kiln.Model(self.path("no-such.json"))
        want = cli_message("init", VQA, "-o", self.path("x.safetensors"), "--set", "labels=3")
        with self.assertRaises(kiln.Error) as e:
            kiln.Model(VQA, set={"labels": 3})
        self.assertEqual(str(e.exception), want)
        with self.assertRaisesRegex(kiln.Error, 'precision "fp16" is not supported \\("fp32", "bf16" or "int8"\\)'):
            kiln.Model(VQA, set=TINY, precision="fp16")
        with self.assertRaisesRegex(kiln.Error, 'backend must be "jit" or "ref", not "gpu"'):
            kiln.Model(VQA, set=TINY, backend="gpu")

    def test_bad_weights_file_carries_the_command_lines_message(self):
        w = safetensors_io.read(self.cli_weights())
        del w["cls.weight"]
        safetensors_io.write(self.path("short.safetensors"), w)
        ins = inputs_of(self.model, 1)
        safetensors_io.write(self.path("in.safetensors"), ins)
        want = cli_message("run", VQA, "--weights", self.path("short.safetensors"), "--inputs",
                           self.path("in.safetensors"), "-o", self.path("o.safetensors"), *SETS)
        self.assertIn('parameter "cls.weight" is missing', want)
        self.model.init(seed=2)  # not the file's values: a bind that stopped half-way would show
        before = self.model.run(ins)
        with self.assertRaises(kiln.Error) as e:
            self.model.load_weights(self.path("short.safetensors"))
        self.assertEqual(str(e.exception), want)
        same_bits(self, before, self.model.run(ins))  # the weights before it stay
        w.pop("cls.bias")
        with self.assertRaisesRegex(kiln.Error, '^weights: parameter "visual_bert.*" is missing|^weights: parameter "cls'):
            self.model.load_weights(w)
        same_bits(self, before, self.model.run(ins))
        with open(self.path("junk.safetensors"), "wb") as f:
            f.write(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
        want = cli_message("run", VQA, "--weights", self.path("junk.safetensors"), "--inputs",
                           self.path("in.safetensors"), "-o", self.path("o.safetensors"), *SETS)
        with self.assertRaises(kiln.Error) as e:
            self.model.load_weights(self.path("junk.safetensors"))
        self.assertEqual(str(e.exception), want)
        with self.assertRaisesRegex(kiln.Error, "nothing-here.safetensors"):
            kiln.load_safetensors(self.path("nothing-here.safetensors"))

    def cli_weights(self):
        cli("init", VQA, "-o", self.path("we.safetensors"), "--seed", "1", *SETS)
        return self.path("we.safetensors")

    def test_bad_inputs(self):
        m = self.model
        m.init(seed=1)
        ins = inputs_of(m, 1)
        safetensors_io.write(self.path("in.safetensors"), dict(ins, visual_embeds=np.zeros((2, 4, 11), np.float32)))
        want = cli_message("run", VQA, "--weights", self.cli_weights(), "--inputs", self.path("in.safetensors"),
                           "-o", self.path("o.safetensors"), *SETS)
        with self.assertRaises(kiln.Error) as e:  # wrong shape: the same message, naming the dict
            m.run(dict(ins, visual_embeds=np.zeros((2, 4, 11), np.float32)))
        self.assertEqual(str(e.exception), want.replace(self.path("in.safetensors"), "inputs"))
        self.assertIn('"visual_embeds"', str(e.exception))
        with self.assertRaisesRegex(kiln.Error, r'inputs: "input_idz" is not an input of .*visualbert-vqa.json'):
            m.run(dict(ins, input_idz=ins["input_ids"]))
        no_mask = {k: v for k, v in ins.items() if k != "attention_mask"}
        with self.assertRaisesRegex(kiln.Error, 'missing inputs: "attention_mask"|input "attention_mask" is missing'):
            m.grad(no_mask)
        with self.assertRaisesRegex(kiln.Error, 'no loss named "lost"'):
            m.grad(ins, loss="lost")
        big = dict(ins, input_ids=np.full((2, 5), 2**63 + 5, np.uint64))
        with self.assertRaisesRegex(kiln.Error, '"input_ids".*does not fit in int64'):
            m.run(big)
        with self.assertRaisesRegex(kiln.Error, r'"input_ids"'):  # 1.5 is no id
            m.run(dict(ins, input_ids=np.full((2, 5), 1.5)))
        with self.assertRaisesRegex(kiln.Error, '"visual_embeds": NumPy dtype complex64 is not supported'):
            m.run(dict(ins, visual_embeds=ins["visual_embeds"].astype(np.complex64)))
        with self.assertRaises(TypeError):
            m.run([1, 2])

    def test_no_weights_yet(self):
        m = kiln.Model(VQA, set=TINY, threads=THREADS)
        with self.assertRaisesRegex(kiln.Error, "no weights yet"):
            m.weights()
        with self.assertRaisesRegex(kiln.Error, "has no value: bind weights first"):
            m.run(inputs_of(m, 1))


class TestTrainer(Base):
    def train_cli(self, *extra):
        return ["train", VQA, "--weights", self.path("wt.safetensors"), "--seed", "1", "--threads", str(THREADS),
                "--lr", "1e-2", *SETS, *extra]

    def test_steps_on_data_equal_kiln_train(self):
        cli("init", VQA, "-o", self.path("wt.safetensors"), "--seed", "2", *SETS)
        safetensors_io.write(self.path("data.safetensors"), inputs_of(self.model, 9, examples=6))
        cli(*self.train_cli("--data", self.path("data.safetensors"), "--steps", "5", "-o",
                            self.path("cli.safetensors")))
        t = kiln.Trainer(VQA, set=TINY, lr=1e-2, steps=5, seed=1, threads=THREADS)
        t.load_weights(self.path("wt.safetensors"))
        t.data(self.path("data.safetensors"))
        losses = [t.step() for _ in range(5)]
        self.assertTrue(all(np.isfinite(losses)))
        t.save(self.path("py.safetensors"))
        with open(self.path("cli.safetensors"), "rb") as a, open(self.path("py.safetensors"), "rb") as b:
            self.assertEqual(a.read(), b.read(), "kiln.Trainer's weights differ from kiln train's")
        same_bits(self, safetensors_io.read(self.path("cli.safetensors")), t.weights())
        with self.assertRaisesRegex(kiln.Error, "all 5 steps are done"):
            t.step()

    def trains_like_cli(self, cli_flags, out, **trainer):
        """3 steps of kiln.Trainer(**trainer) give the bits of `kiln train CLI_FLAGS` (weights
        wt.safetensors, data.safetensors); returns the trainer."""
        cli(*self.train_cli("--data", self.path("data.safetensors"), "--steps", "3", *cli_flags, "-o",
                            self.path(out)))
        t = kiln.Trainer(VQA, set=TINY, lr=1e-2, steps=3, seed=1, threads=THREADS, **trainer)
        t.load_weights(self.path("wt.safetensors"))
        t.data(self.path("data.safetensors"))
        for _ in range(3):
            t.step()
        same_bits(self, safetensors_io.read(self.path(out)), t.weights())
        return t

    def test_recompute_layers_trains_the_same_bits(self):
        cli("init", VQA, "-o", self.path("wt.safetensors"), "--seed", "2", *SETS)
        safetensors_io.write(self.path("data.safetensors"), inputs_of(self.model, 9, examples=6))
        self.trains_like_cli([], "cli.safetensors", recompute="layers")  # kiln train without it
        with self.assertRaisesRegex(kiln.Error, 'recompute takes "layers", not "blocks"'):
            kiln.Trainer(VQA, set=TINY, recompute="blocks")

    def test_bf16_steps_equal_kiln_train_precision_bf16(self):
        cli("init", VQA, "-o", self.path("wt.safetensors"), "--seed", "2", *SETS)
        safetensors_io.write(self.path("data.safetensors"), inputs_of(self.model, 9, examples=6))
        t = self.trains_like_cli(["--precision", "bf16"], "cli16.safetensors", precision="bf16")
        cli(*self.train_cli("--data", self.path("data.safetensors"), "--steps", "3", "-o",
                            self.path("cli32.safetensors")))
        w32 = safetensors_io.read(self.path("cli32.safetensors"))
        self.assertFalse(np.array_equal(w32["cls.weight"], t.weights()["cls.weight"]), "bf16 trained as fp32")
        with self.assertRaisesRegex(kiln.Error, 'int8 is not yet supported for training'):
            kiln.Trainer(VQA, set=TINY, precision="int8")

    def test_step_on_a_batch_equals_kiln_train(self):
        # Every example the same: whatever order kiln train takes them in, its batches are this one.
        cli("init", VQA, "-o", self.path("wt.safetensors"), "--seed", "2", *SETS)
        batch = inputs_of(self.model, 10)
        data = {k: np.repeat(v[:1], 4, axis=0) for k, v in batch.items()}
        batch = {k: v[:2] for k, v in data.items()}
        safetensors_io.write(self.path("same.safetensors"), data)
        cli(*self.train_cli("--data", self.path("same.safetensors"), "--steps", "3", "--optimizer", "sgd", "-o",
                            self.path("cli-sgd.safetensors")))
        t = kiln.Trainer(VQA, set=TINY, optimizer="sgd", lr=1e-2, steps=3, seed=1, threads=THREADS)
        t.init(seed=2)
        for _ in range(3):
            t.step({k: v.astype(np.int32) if v.dtype == np.int64 else v for k, v in batch.items()})
        same_bits(self, safetensors_io.read(self.path("cli-sgd.safetensors")), t.weights())

    def test_bad_trainer_arguments(self):
        with self.assertRaisesRegex(kiln.Error, 'optimizer must be adamw or sgd, not "adam"'):
            kiln.Trainer(VQA, set=TINY, optimizer="adam")
        t = kiln.Trainer(VQA, set=TINY, steps=2, threads=THREADS)
        with self.assertRaisesRegex(kiln.Error, "no weights yet"):
            t.step(inputs_of(self.model, 1))
        t.init()
        with self.assertRaisesRegex(kiln.Error, "step needs a batch"):
            t.step()
        with self.assertRaisesRegex(kiln.Error, 'batch: "input_idz" is not an input'):
            t.step(dict(inputs_of(self.model, 1), input_idz=np.zeros((2, 5), np.int64)))
        with self.assertRaisesRegex(kiln.Error, "^data: 1 examples, fewer than one batch"):
            t.data(inputs_of(self.model, 1, examples=1))


class TestFiles(Base):
    def test_safetensors_round_trip_against_an_independent_reader(self):
        rng = np.random.default_rng(0)
        t = {"a": rng.random((3, 4), dtype=np.float32), "b": np.arange(6, dtype=np.int64).reshape(2, 3),
             "c": np.array([1.5, -2], np.float16), "d": np.array(7, np.int32), "e": np.array([True, False]),
             "f": np.asfortranarray(rng.random((2, 3)))}
        kiln.save_safetensors(self.path("t.safetensors"), t)
        same_bits(self, t, safetensors_io.read(self.path("t.safetensors")))
        same_bits(self, t, kiln.load_safetensors(self.path("t.safetensors")))
        safetensors_io.write(self.path("bf.safetensors"), {"x": np.array([1.0, -0.5, 3.0], np.float32)}, bf16=["x"])
        x = kiln.load_safetensors(self.path("bf.safetensors"))["x"]  # widened to float32, exactly
        self.assertEqual(x.dtype, np.float32)
        self.assertEqual(x.tolist(), [1.0, -0.5, 3.0])

    def test_tokenizer_equals_kiln_tokenize(self):
        vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "red", "circle", "##s", "left", "of",
                 "the", "cafe", ",", "!", "big", "##ger", "\u4e2d"]
        with open(self.path("vocab.txt"), "w") as f:
            f.write("\n".join(vocab) + "\n")
        tok = kiln.Tokenizer(self.path("vocab.txt"))
        for text in ["a red circle", "Circles, left of THE Café!", "bigger \u4e2d\u6587 unknownword [SEP] a", ""]:
            out = subprocess.run([KILN, "tokenize", "--vocab", self.path("vocab.txt"), text], capture_output=True,
                                 text=True, check=True).stdout.split()
            self.assertEqual([int(i) for i in out], tok.encode(text), text)
        self.assertEqual(tok.tokens("red circles"), ["red", "circle", "##s"])
        self.assertEqual((tok.cls_id, tok.sep_id, tok.pad_id, tok.size), (2, 3, 0, len(vocab)))
        with open(self.path("nounk.txt"), "w") as f:
            f.write("a\nb\n")
        want = cli_message("tokenize", "--vocab", self.path("nounk.txt"), "a")
        with self.assertRaises(kiln.Error) as e:
            kiln.Tokenizer(self.path("nounk.txt"))
        self.assertEqual(str(e.exception), want)


class TestReferences(Base):
    def test_no_leak_over_1000_runs(self):
        m = self.model
        m.init(seed=1)
        ins = inputs_of(m, 1)
        ins["input_ids"] = ins["input_ids"].astype(np.int16)  # a converted input too
        counts = {k: sys.getrefcount(v) for k, v in ins.items()}
        out = m.run(ins)
        out_counts = {k: sys.getrefcount(v) for k, v in out.items()}
        for _ in range(50):  # warm up the allocators (and compile grad's program)
            m.run(ins)
            m.grad(ins)
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
        rss0 = rss_kb()
        for i in range(1000):
            r = m.run(ins)
            if i % 5 == 0:
                r = m.grad(ins)
        del r
        gc.collect()
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
        rss1 = rss_kb()
        grown = sum(s.size_diff for s in after.compare_to(before, "filename"))
        self.assertLess(grown, 64 * 1024, f"Python memory grew {grown} bytes over 1,000 runs and 200 grads")
        self.assertLess(rss1 - rss0, 4096, f"RSS grew {rss1 - rss0} kB over 1,000 runs and 200 grads")
        self.assertEqual(counts, {k: sys.getrefcount(v) for k, v in ins.items()})
        self.assertEqual(out_counts, {k: sys.getrefcount(v) for k, v in out.items()})
        for _ in range(200):  # errors release what they took, too
            with self.assertRaises(kiln.Error):
                m.run(dict(ins, visual_embeds=np.zeros((1,), np.float32)))
        self.assertEqual(counts, {k: sys.getrefcount(v) for k, v in ins.items()})

    def test_inputs_that_fit_are_not_copied(self):
        # NumPy reports its buffers to tracemalloc: a run that copied visual_embeds would
        # allocate at least its size, as one on a Fortran-ordered copy of it does.
        big = kiln.Model(VQA, set=dict(TINY, regions=4096), threads=THREADS)
        big.init(seed=1)
        ins = inputs_of(big, 1)
        fortran = dict(ins, visual_embeds=np.asfortranarray(ins["visual_embeds"]))
        nbytes = ins["visual_embeds"].nbytes
        big.run(ins)
        gc.collect()
        tracemalloc.start()
        big.run(ins)
        fit_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        big.run(fortran)
        copy_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        self.assertLess(fit_peak, nbytes // 2, "a float32 C-contiguous input was copied")
        self.assertGreater(copy_peak, nbytes, "the Fortran-ordered input was not made contiguous (test broken?)")


class TestThreads(Base):
    def test_gil_is_released_while_compiling_and_running(self):
        # A worker compiles and runs a model (one long run, one thread) while this thread
        # records the times it gets to run Python: were the GIL held, none would fall inside
        # the worker's calls.
        # (big enough that one run takes ~0.5 s on a quiet 2-core machine: at half this size
        # a run took 0.07 s there, too short to tell)
        sets = {"hidden": 256, "layers": 4, "heads": 4, "intermediate": 1024, "vocab": 100, "visual_dim": 64,
                "text_len": 64, "regions": 64, "max_positions": 64, "batch": 48, "num_labels": 6}
        spans, ticks = {}, []

        def work():
            t0 = time.monotonic()
            m = kiln.Model(VQA, set=sets, threads=1)
            spans["compile"] = (t0, time.monotonic())
            m.init(seed=1)
            ins = inputs_of(m, 1)
            t0 = time.monotonic()
            m.run(ins)
            spans["run"] = (t0, time.monotonic())

        worker = threading.Thread(target=work)
        worker.start()
        while worker.is_alive():
            ticks.append(time.monotonic())
            time.sleep(0.001)
        worker.join()
        for what, (t0, t1) in spans.items():
            margin = 0.03
            self.assertGreater(t1 - t0, 4 * margin, f"{what} took {t1 - t0:.3f} s: too short to tell")
            inside = [t for t in ticks if t0 + margin < t < t1 - margin]
            self.assertTrue(inside, f"no Python ran during {what} ({t1 - t0:.3f} s): the GIL was held")


def rss_kb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


if __name__ == "__main__":
    unittest.main(verbosity=2)
