// `kiln`: the command-line entry. Parses the subcommand and its options, prints help, and
// dispatches to the cmd_* functions. Every user error is printed once, here or in them.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/cli.h"
#include "passes/passes.h"

typedef struct Command {
  const char *name;
  int (*run)(const CliOptions *);
  const char *usage;
  const char *help;
  const char *opts;  // the options it accepts, space separated
} Command;

static const Command commands[] = {
  {"check", cmd_check, "kiln check MODEL [--set NAME=VALUE]... [--verbose] [--grad [--loss NAME]] [--memory]",
   "Parse and verify MODEL and print a summary: config, inputs, outputs, losses,\n"
   "parameter count (`parameters: N`) and FLOPs of one forward pass.\n"
   "  --verbose          also list every parameter with its shape\n"
   "  --grad             check the training graph (forward and backward of --loss)\n"
   "  --memory           lower the graph (no JIT) and print its memory plan: arena_bytes,\n"
   "                     lower_bound_bytes (most bytes live at once), unplanned_bytes (sum\n"
   "                     of all intermediates), pinned_bytes (live throughout: outputs,\n"
   "                     gradients, packed weights); with --grad, of the training step\n",
   " set verbose grad loss disable-pass memory "},
  {"dump", cmd_dump,
   "kiln dump MODEL [--after PASS] [--format text|dot] [--grad [--loss NAME]] [--set NAME=VALUE]...",
   "Print the IR of MODEL after a pass of the pipeline (default: the last one).\n"
   "  --after PASS       stop after this pass (`kiln ops` lists the passes)\n"
   "  --disable-pass P   skip pass P (repeatable)\n"
   "  --format text|dot  one node a line (default), or Graphviz\n"
   "  --grad             the joint forward+backward graph of the loss (autodiff)\n"
   "  --loss NAME        with --grad: which of the model's losses (default: loss)\n",
   " set after format disable-pass grad loss "},
  {"init", cmd_init, "kiln init MODEL -o W.safetensors [--seed S] [--set NAME=VALUE]...",
   "Initialise every parameter of MODEL by its initialiser and write them (f32).\n"
   "  -o, --output FILE  where to write the weights\n"
   "  --seed S           random seed (default 0); the same seed gives the same weights\n",
   " set output seed "},
  {"run", cmd_run,
   "kiln run MODEL --weights W --inputs IN -o OUT [--set NAME=VALUE]... [--threads N] "
   "[--backend ref]",
   "Run MODEL in inference (dropout off) and write every declared output, and every\n"
   "loss, whose inputs IN provides.\n"
   "  --weights FILE     parameters (safetensors), by name\n"
   "  --inputs FILE      inputs (safetensors), by name; integer inputs may be I32/I64,\n"
   "                     floats F32/F64/F16/BF16 (converted when no value changes)\n"
   "  -o, --output FILE  outputs (safetensors)\n"
   "  --backend jit|ref  native code through LLVM (default), or the reference evaluator\n"
   "                     (plain loops in double precision: slow, the oracle for tests)\n"
   "  --threads N        threads (default: KILN_NUM_THREADS, else every core; ref uses one)\n"
   "  --dump-llvm DIR    write the optimised LLVM IR to DIR: kiln.ll and one file a kernel\n"
   "  --verbose          list tensors in the files that the model does not use\n",
   " set weights inputs output backend threads verbose disable-pass dump-llvm "},
  {"grad", cmd_grad,
   "kiln grad MODEL --weights W --inputs IN -o G [--loss NAME] [--seed S] [--set NAME=VALUE]... "
   "[--backend jit]",
   "Differentiate MODEL's loss (reverse mode) and write the loss as `loss` and, for every\n"
   "parameter, its gradient under the parameter's own name (zeros where the loss does not\n"
   "reach it). Dropout is active (training mode); --set dropout=0 makes it deterministic.\n"
   "  --loss NAME        which of the model's losses (default: loss)\n"
   "  --seed S           the dropout stream (default 0); both backends draw the same masks\n"
   "  --backend ref|jit  the reference evaluator in double precision (default), or native\n"
   "                     code through LLVM (f32, compiled in training mode)\n"
   "  --threads N        threads for jit (default: KILN_NUM_THREADS, else every core)\n"
   "  --weights, --inputs, -o, --dump-llvm as for run\n",
   " set weights inputs output loss seed verbose disable-pass backend threads dump-llvm "},
  {"train", cmd_train,
   "kiln train MODEL --weights W --data DATA -o W_OUT [--steps N] [--lr X] "
   "[--optimizer adamw|sgd] [--seed S] [--set NAME=VALUE]... [--checkpoint-every N] "
   "[--resume CKPT] [--threads N]",
   "Train MODEL's loss on DATA with the JIT (compiled once, dropout active) and write the\n"
   "trained parameters to W_OUT. DATA holds one tensor per model input with a leading\n"
   "example dimension; each step takes the next `batch` examples (the model's config) of\n"
   "a per-epoch permutation. Data order and dropout depend only on (seed, step).\n"
   "  --steps N          optimiser steps (default 100)\n"
   "  --lr X             peak learning rate (default 1e-4 adamw, 1e-2 sgd); linear warm-up\n"
   "                     over the first 10% of the steps, then linear decay to 0\n"
   "  --optimizer NAME   adamw (default: betas 0.9/0.999, eps 1e-6, weight decay 0.01 except\n"
   "                     biases and LayerNorm weights) or sgd (momentum 0.9); gradients are\n"
   "                     clipped to a global norm of 1\n"
   "  --seed S           data order and dropout stream (default 0)\n"
   "  --checkpoint-every N  every N steps and at the end, write weights and optimiser state\n"
   "                     to W_OUT with .step-K inserted before .safetensors\n"
   "  --resume CKPT      continue from a checkpoint (its weights replace --weights); pass\n"
   "                     the same --steps, --seed and --data to reach the same weights\n"
   "  --threads N        threads (default: KILN_NUM_THREADS, else every core)\n"
   "  --loss NAME        which of the model's losses (default: loss)\n",
   " set weights data output steps lr optimizer seed checkpoint-every resume threads loss "
   "verbose disable-pass dump-llvm "},
  {"bench", cmd_bench,
   "kiln bench MODEL [--set NAME=VALUE]... [--iters N] [--threads N] [--weights W] [--inputs IN]",
   "Compile MODEL once with the JIT, run warm-up and N timed inferences, and print\n"
   "compile_ms and median_ms (and GFLOP/s from the model's FLOP count).\n"
   "  --iters N          timed iterations (default 20)\n"
   "  --threads N        threads (default: KILN_NUM_THREADS, else every core)\n"
   "  --weights FILE     parameters (default: initialised from --seed)\n"
   "  --inputs FILE      inputs (default: ids 0, float inputs 1)\n"
   "  --dump-llvm DIR    write the optimised LLVM IR to DIR: kiln.ll and one file a kernel\n",
   " set iters threads weights inputs seed dump-llvm disable-pass verbose "},
  {"ops", cmd_ops, "kiln ops", "List the operators a model file can use, with their attributes.\n",
   " "},
};
#define N_COMMANDS (int)(sizeof commands / sizeof commands[0])

static void print_main_help(FILE *f) {
  fprintf(f,
          "kiln: compile and run dataflow graphs of deep-learning models.\n\n"
          "usage: kiln COMMAND MODEL [options]\n\ncommands:\n");
  for (int i = 0; i < N_COMMANDS; i++) fprintf(f, "  %s\n", commands[i].usage);
  fprintf(f,
          "\ncommon options:\n"
          "  --set NAME=VALUE   override a config entry of the model (repeatable)\n"
          "  -h, --help         help (`kiln COMMAND --help` for one command)\n\n"
          "exit codes: 0 success, 1 a problem with the model or tensor files, 2 a bad command line\n"
          "docs: docs/model-format.md (model files), docs/architecture.md (internals)\n");
}

static int usage_error(const Command *c, const char *fmt, const char *arg) {
  fprintf(stderr, "kiln: ");
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "\nusage: %s\n", c ? c->usage : "kiln COMMAND MODEL [options] (kiln --help)");
  return EXIT_USAGE;
}

static bool is_pass(const char *name) {
  for (int i = 0; i < pass_count; i++)
    if (strcmp(name, pass_pipeline[i].name) == 0) return true;
  return false;
}

static bool parse_int(const char *s, long long lo, long long hi, long long *out) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || end == s || *end || v < lo || v > hi) return false;
  *out = v;
  return true;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    print_main_help(stderr);
    return EXIT_USAGE;
  }
  if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) {
    print_main_help(stdout);
    return 0;
  }
  if (strcmp(argv[1], "--version") == 0) {
    printf("kiln 0.1.0\n");
    return 0;
  }
  const Command *c = NULL;
  for (int i = 0; i < N_COMMANDS; i++)
    if (strcmp(argv[1], commands[i].name) == 0) c = &commands[i];
  if (!c) return usage_error(NULL, "unknown command \"%s\"", argv[1]);

  CliOptions o = {.cmd = c->name, .threads = 0};
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    const char *val = i + 1 < argc ? argv[i + 1] : NULL;
#define TAKES_VALUE()                                                                  \
  do {                                                                                 \
    if (!val) return usage_error(c, "%s needs a value", a);                            \
    i++;                                                                               \
  } while (0)
    if (a[0] == '-' && a[1] == '-' && strcmp(a, "--help") != 0) {
      char key[64];
      snprintf(key, sizeof key, " %s ", a + 2);
      bool known_elsewhere = false;
      for (int k = 0; k < N_COMMANDS; k++) known_elsewhere |= strstr(commands[k].opts, key) != NULL;
      if (known_elsewhere && !strstr(c->opts, key))
        return usage_error(c, "option \"%s\" does not apply to this command", a);
    }
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      o.help = true;
    } else if (strcmp(a, "--verbose") == 0 || strcmp(a, "-v") == 0) {
      o.verbose = true;
    } else if (strcmp(a, "--grad") == 0) {
      o.grad = true;
    } else if (strcmp(a, "--memory") == 0) {
      o.memory = true;
    } else if (strcmp(a, "--set") == 0) {
      TAKES_VALUE();
      if (o.n_sets == CLI_MAX_SETS) return usage_error(c, "too many --set options%s", "");
      if (!fe_parse_set(val, &o.sets[o.n_sets++]))
        return usage_error(c, "--set \"%s\": expected NAME=VALUE", val);
    } else if (strcmp(a, "--weights") == 0) {
      TAKES_VALUE();
      o.weights = val;
    } else if (strcmp(a, "--inputs") == 0) {
      TAKES_VALUE();
      o.inputs = val;
    } else if (strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0) {
      TAKES_VALUE();
      o.output = val;
    } else if (strcmp(a, "--after") == 0) {
      TAKES_VALUE();
      if (!is_pass(val)) return usage_error(c, "--after \"%s\": no such pass (see `kiln ops`)", val);
      o.after = val;
    } else if (strcmp(a, "--disable-pass") == 0) {
      TAKES_VALUE();
      if (o.n_disabled == 64) return usage_error(c, "too many --disable-pass options%s", "");
      if (!is_pass(val))
        return usage_error(c, "--disable-pass \"%s\": no such pass (see `kiln ops`)", val);
      o.disabled[o.n_disabled++] = val;
    } else if (strcmp(a, "--format") == 0) {
      TAKES_VALUE();
      if (strcmp(val, "text") != 0 && strcmp(val, "dot") != 0)
        return usage_error(c, "--format must be text or dot, not \"%s\"", val);
      o.format = val;
    } else if (strcmp(a, "--backend") == 0) {
      TAKES_VALUE();
      if (strcmp(val, "ref") != 0 && strcmp(val, "jit") != 0)
        return usage_error(c, "--backend must be jit or ref, not \"%s\"", val);
      o.backend = val;
    } else if (strcmp(a, "--loss") == 0) {
      TAKES_VALUE();
      o.loss = val;
    } else if (strcmp(a, "--dump-llvm") == 0) {
      TAKES_VALUE();
      o.dump_llvm = val;
    } else if (strcmp(a, "--iters") == 0) {
      TAKES_VALUE();
      long long v;
      if (!parse_int(val, 1, 1000000, &v))
        return usage_error(c, "--iters must be an integer in [1, 1000000], not \"%s\"", val);
      o.iters = (int)v;
    } else if (strcmp(a, "--seed") == 0) {
      TAKES_VALUE();
      long long v;
      if (!parse_int(val, 0, (long long)(~0ull >> 1), &v))
        return usage_error(c, "--seed must be a non-negative integer, not \"%s\"", val);
      o.seed = (uint64_t)v;
    } else if (strcmp(a, "--data") == 0) {
      TAKES_VALUE();
      o.data = val;
    } else if (strcmp(a, "--resume") == 0) {
      TAKES_VALUE();
      o.resume = val;
    } else if (strcmp(a, "--optimizer") == 0) {
      TAKES_VALUE();
      if (strcmp(val, "adamw") != 0 && strcmp(val, "sgd") != 0)
        return usage_error(c, "--optimizer must be adamw or sgd, not \"%s\"", val);
      o.optimizer = val;
    } else if (strcmp(a, "--steps") == 0 || strcmp(a, "--checkpoint-every") == 0) {
      TAKES_VALUE();
      long long v;
      if (!parse_int(val, 1, 1000000000, &v))
        return usage_error(c, strcmp(a, "--steps") == 0
                                  ? "--steps must be an integer in [1, 1000000000], not \"%s\""
                                  : "--checkpoint-every must be an integer in [1, 1000000000], not \"%s\"",
                           val);
      if (strcmp(a, "--steps") == 0) o.steps = (int)v;
      else o.checkpoint_every = (int)v;
    } else if (strcmp(a, "--lr") == 0) {
      TAKES_VALUE();
      char *end;
      errno = 0;
      double v = strtod(val, &end);
      if (errno || end == val || *end || !(v > 0) || v > 1e3)
        return usage_error(c, "--lr must be a number in (0, 1000], not \"%s\"", val);
      o.lr = v;
    } else if (strcmp(a, "--threads") == 0) {
      TAKES_VALUE();
      long long v;
      if (!parse_int(val, 1, 1024, &v))
        return usage_error(c, "--threads must be an integer in [1, 1024], not \"%s\"", val);
      o.threads = (int)v;
    } else if (a[0] == '-' && a[1]) {
      return usage_error(c, "unknown option \"%s\"", a);
    } else if (!o.model && strcmp(c->name, "ops") != 0) {
      o.model = a;
    } else {
      return usage_error(c, "unexpected argument \"%s\"", a);
    }
#undef TAKES_VALUE
  }
  if (o.help) {
    printf("usage: %s\n\n%s", c->usage, c->help);
    return 0;
  }
  if (!o.model && strcmp(c->name, "ops") != 0) return usage_error(c, "%s needs a MODEL file", c->name);
  return c->run(&o);
}
