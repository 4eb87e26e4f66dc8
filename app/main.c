// `kiln`: the command-line entry. Parses the subcommand and its options, reads the
// environment (the one place that does), prints help, and dispatches to the cmd_*
// functions. Every user error is printed once, here or in them.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/cli.h"
#include "codegen/aot.h"
#include "passes/passes.h"
#include "runtime/cache.h"

typedef struct Command {
  const char *name;
  int (*run)(const CliOptions *);
  const char *usage;
  const char *help;
  const char *opts;  // the options it accepts, space separated
} Command;

static const Command commands[] = {
  {"check", cmd_check, "kiln check MODEL [--set NAME=VALUE]... [--verbose] [--grad [--loss NAME]] [--memory [--train]]",
   "Parse and verify MODEL and print a summary: config, inputs, outputs, losses,\n"
   "parameter count (`parameters: N`) and FLOPs of one forward pass.\n"
   "  --verbose          also list every parameter with its shape, the host CPU, and the\n"
   "                     kernels per encoder layer before and after fusion\n"
   "  --grad             check the training graph (forward and backward of --loss)\n"
   "  --memory           lower the graph (no JIT) and print its memory plan: arena_bytes,\n"
   "                     lower_bound_bytes (most bytes live at once), unplanned_bytes (sum\n"
   "                     of all intermediates), pinned_bytes (live throughout: outputs,\n"
   "                     gradients, packed weights); with --grad, of the training step;\n"
   "                     then the parts of a run's peak resident memory (weights, packed\n"
   "                     copies, inputs, overhead) and predicted_peak_rss_bytes, the peak\n"
   "                     RSS of kiln run / kiln bench with the compile cache warm\n"
   "  --train            with --memory: the program kiln train and kiln bench --train run\n"
   "                     (loss, gradients and the optimiser's update; --optimizer adamw|sgd):\n"
   "                     adds gradients_bytes and optimizer_state_bytes; the prediction is\n"
   "                     of one process with the compile cache warm, without --data (kiln\n"
   "                     train adds its data file, held whole, and its converted examples)\n"
   "  --recompute layers with --grad or --train: kiln train --recompute layers' program\n"
   "  --precision P      fp32 (default), bf16 or int8 (docs/precision.md)\n",
   " set max-nodes max-config verbose grad loss disable-pass memory recompute train optimizer precision "},
  {"dump", cmd_dump,
   "kiln dump MODEL [--after PASS] [--format text|dot] [--grad [--loss NAME]] [--set NAME=VALUE]...",
   "Print the IR of MODEL after a pass of the pipeline (default: the last one).\n"
   "  --after PASS       stop after this pass (`kiln ops` lists the passes)\n"
   "  --disable-pass P   skip pass P (repeatable)\n"
   "  --format text|dot  one node a line (default), or Graphviz\n"
   "  --grad             the joint forward+backward graph of the loss (autodiff)\n"
   "  --loss NAME        with --grad: which of the model's losses (default: loss)\n"
   "  --precision P      fp32 (default), bf16 (GEMM operands rounded to bf16, f32 sums)\n"
   "                     or int8 (linear layers: int8 operands, int32 sums; docs/precision.md)\n"
   "  --recompute layers with --grad: with the recomputed layers (kiln train --recompute)\n",
   " set max-nodes max-config after format disable-pass grad loss precision recompute "},
  {"init", cmd_init, "kiln init MODEL -o W.safetensors [--seed S] [--dtype f32|bf16] [--set NAME=VALUE]...",
   "Initialise every parameter of MODEL by its initialiser and write them.\n"
   "  -o, --output FILE  where to write the weights\n"
   "  --seed S           random seed (default 0); the same seed gives the same weights\n"
   "  --dtype f32|bf16   how float parameters are stored (default f32); bf16: the f32 values\n"
   "                     rounded to nearest even, half the bytes. Every command takes F32 or\n"
   "                     BF16 weights (BF16 converted to f32 exactly; docs/precision.md)\n",
   " set max-nodes max-config output seed dtype "},
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
   "  --verbose          list tensors in the files that the model does not use\n"
   "  --text TEXT        input_ids, token_type_ids, attention_mask from TEXT: [CLS] TEXT\n"
   "                     [SEP] padded to text_len (needs --vocab; the rest from --inputs)\n"
   "  --vocab FILE       the WordPiece vocabulary for --text (BERT's vocab.txt)\n"
   "  --precision P      fp32 (default), bf16 (GEMM operands rounded to bf16, f32 sums)\n"
   "                     or int8 (linear layers: int8 operands, int32 sums; docs/precision.md)\n"
   "  --output-attentions  also write each layer's attention probabilities, attentions.{i}\n"
   "                     [batch, heads, n, n] (the model's output group \"attentions\")\n",
   " set max-nodes max-config max-memory weights inputs output backend threads verbose disable-pass dump-llvm text vocab precision cache-dir no-cache cache-size output-attentions "},
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
   "  --precision P      fp32 (default) or bf16: forward and backward GEMM operands rounded\n"
   "                     to bf16, f32 sums (docs/precision.md)\n"
   "  --recompute layers keep only each encoder layer's input for the backward and compute\n"
   "                     the layer again there (activation checkpointing; same gradients,\n"
   "                     bit for bit; docs/training.md)\n"
   "  --weights, --inputs, -o, --dump-llvm as for run\n",
   " set max-nodes max-config max-memory weights inputs output loss seed verbose disable-pass backend threads dump-llvm precision cache-dir no-cache cache-size recompute "},
  {"train", cmd_train,
   "kiln train MODEL --weights W --data DATA -o W_OUT [--steps N] [--lr X] "
   "[--optimizer adamw|sgd] [--seed S] [--set NAME=VALUE]... [--checkpoint-every N] "
   "[--resume CKPT] [--threads N] [--init W] [--eval-data VAL [--eval-every N]] [--accumulate K] [--bucket-mb N] "
   "[--check-replicas] [--trace FILE]",
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
   "  --init W           instead of --weights: start from W (e.g. pre-trained); parameters\n"
   "                     W lacks (a task's head) get their initialisers' values for --seed;\n"
   "                     W's other tensors are listed and ignored\n"
   "  --eval-data VAL    score the weights on VAL (as kiln eval does: loss and accuracies,\n"
   "                     dropout off) before the first step, every --eval-every N steps and\n"
   "                     after the last, one line each on stderr: \"eval step K: examples E\n"
   "                     loss L accuracy A ...\"; compiled once, beside the training program\n"
   "  --threads N        threads (default: KILN_NUM_THREADS, else every core)\n"
   "  --loss NAME        which of the model's losses (default: loss)\n"
   "  --precision P      fp32 (default) or bf16: mixed precision, the forward and backward\n"
   "                     GEMMs multiply bf16 operands; weights, optimiser state and\n"
   "                     gradient sums stay f32 (docs/precision.md)\n"
   "  --trace FILE       record the first 20 steps as a Chrome trace (docs/trace.md)\n"
   "  --recompute layers keep only each encoder layer's input for the backward and compute\n"
   "                     the layer again there: less memory for one more forward a step,\n"
   "                     the same weights bit for bit (docs/training.md)\n"
   "  --accumulate K     gradient accumulation: each step averages the gradients of K\n"
   "                     batches before one update (a global batch of K x batch); equal to\n"
   "                     one step of --set batch=K*B when the loss is a mean over examples\n"
   "  --bucket-mb N      under mpirun: all-reduce the gradients in buckets of N MiB, each\n"
   "                     started as soon as the backward has finished its gradients\n"
   "                     (default 25, as PyTorch DDP; 0: one all-reduce per gradient)\n"
   "  --check-replicas   under mpirun: after every step, fail unless every process holds\n"
   "                     bit-identical parameters and optimiser state (a debug check)\n"
   "Under mpirun -np N (a kiln built with MPI) it trains data-parallel: batch is each\n"
   "process's share, the global batch N x batch (docs/distributed.md).\n"
   "The update is compiled with the forward and backward (one plan run a step).\n"
   "Ctrl-C (SIGINT) or SIGTERM finishes the step, writes a checkpoint, prints how to\n"
   "resume and exits with 130. More: docs/training.md.\n",
   " set max-nodes max-config max-memory weights data output steps lr optimizer seed checkpoint-every resume "
   "threads loss verbose disable-pass dump-llvm init eval-data eval-every check-replicas accumulate bucket-mb trace precision cache-dir no-cache cache-size recompute "},
  {"bench", cmd_bench,
   "kiln bench MODEL [--train [--optimizer adamw|sgd]] [--set NAME=VALUE]... [--iters N] "
   "[--threads N] [--weights W] [--inputs IN] [--profile] [--trace FILE]",
   "Compile MODEL once with the JIT, run warm-up and N timed inferences, and print\n"
   "compile_ms and median_ms (and GFLOP/s from the model's FLOP count).\n"
   "  --train            time whole training steps instead: forward, backward and the\n"
   "                     compiled optimiser update (as kiln train runs them) of the loss\n"
   "                     (--loss), on fixed inputs (ids and labels 0, floats 1); default\n"
   "                     10 iterations; --recompute layers as for kiln train\n"
   "  --iters N          timed iterations (default 20)\n"
   "  --threads N        threads (default: KILN_NUM_THREADS, else every core)\n"
   "  --weights FILE     parameters (default: initialised from --seed)\n"
   "  --inputs FILE      inputs (default: ids 0, float inputs 1)\n"
   "  --profile          then N more runs with every step timed: milliseconds a run by op\n"
   "                     (fused nodes by kind) and the 15 slowest steps (inference only)\n"
   "  --trace FILE       then N more runs (steps with --train) recorded as a Chrome trace:\n"
   "                     a track per thread, a span per step and barrier wait, arena bytes\n"
   "                     in use (open in ui.perfetto.dev or chrome://tracing; docs/trace.md)\n"
   "  --dump-llvm DIR    write the optimised LLVM IR to DIR: kiln.ll and one file a kernel\n"
   "  --precision P      fp32 (default), bf16 (GEMM operands rounded to bf16, f32 sums)\n"
   "                     or int8 (linear layers: int8 operands, int32 sums; docs/precision.md)\n",
   " set max-nodes max-config max-memory iters threads weights inputs seed dump-llvm disable-pass verbose train optimizer loss "
   "profile trace precision cache-dir no-cache cache-size recompute "},
  {"tokenize", cmd_tokenize, "kiln tokenize --vocab V [--tokens] [--] TEXT",
   "Split TEXT with BERT-uncased's basic tokenizer and WordPiece over the vocabulary V\n"
   "(BERT's vocab.txt: one token a line, id = line number) and print the token ids on one\n"
   "line, separated by spaces (no [CLS]/[SEP] added).\n"
   "  --vocab FILE       the vocabulary (must contain [UNK])\n"
   "  --tokens           print the token strings instead of the ids\n"
   "  --                 what follows is TEXT even if it starts with '-'\n",
   " vocab tokens "},
  {"convert-hf", cmd_convert_hf, "kiln convert-hf DIR -o W.safetensors [--model MODEL]",
   "Convert a Hugging Face VisualBERT checkpoint directory (config.json, model.safetensors\n"
   "or pytorch_model.bin) into kiln weights for MODEL (default: the model file for\n"
   "config.json's architectures:\n"
   "models/visualbert-{vqa,pretrain,nlvr2}.json). The config's sizes become --set values\n"
   "(hidden_size, num_hidden_layers, num_attention_heads, intermediate_size,\n"
   "visual_embedding_dim, vocab_size, max_position_embeddings, type_vocab_size,\n"
   "layer_norm_eps, num_labels from id2label), written to W.safetensors.sets, one --set a\n"
   "line (kiln run MODEL $(cat W.safetensors.sets) ...). Every parameter must be in the\n"
   "checkpoint with its shape; fp16, bf16 and f64 tensors are converted to f32; tensors the\n"
   "model has no parameter for are listed and ignored. pytorch_model.bin (a pickle) is read\n"
   "by PyTorch, in the Python this kiln was built with (python3-torch); sharded checkpoints\n"
   "(*.index.json) are not supported.\n"
   "  -o, --output FILE  the weights (safetensors)\n"
   "  --model MODEL      the kiln model file the checkpoint is for\n",
   " output model "},
  {"data", cmd_data,
   "kiln data synth -o DIR [--seed S] [--train N] [--val N] [--test N] [--set NAME=VALUE]...",
   "Write a synthetic grounded vision-language data set to DIR (see docs/data.md):\n"
   "vocab.txt, answers.txt, config.txt and TASK-{train,val,test}.safetensors for TASK in\n"
   "{pretrain,pretrain-static,vqa,nlvr2,vcr,flickr} (pretrain-static: masked once, for scoring)\n"
   "and, for task-specific pre-training (a task's own text and images in the pre-training\n"
   "layout), TASK-mlm and TASK-mlm-static for TASK in {vqa,nlvr2,vcr,flickr}\n"
   "in the layout kiln train and kiln eval read. The same seed gives identical files.\n"
   "  -o, --output DIR   where to write (created if missing)\n"
   "  --seed S           the world (region feature projection) and every example (default 0)\n"
   "  --train/--val/--test N  examples per split and task (default 2000/500/500)\n"
   "  --set NAME=VALUE   visual_dim (default 32), regions (default 8; NLVR2 pairs use half\n"
   "                     each), text_len (default 24)\n",
   " output seed train val test set "},
  {"eval", cmd_eval, "kiln eval MODEL --weights W --data D [--set NAME=VALUE]... [--threads N]",
   "Run MODEL (JIT, inference) over every example of D in batches of the model's `batch`\n"
   "and print the mean loss and accuracies, one `name: value` a line: `loss`, and for a\n"
   "soft-score head (VQA) `accuracy` (argmax = best answer) and `vqa_accuracy` (the\n"
   "target's score of the argmax answer); for class labels `accuracy`; for pre-training\n"
   "`mlm_accuracy` (non-ignored tokens) and `sentence_image_accuracy`.\n"
   "  --weights FILE     parameters (safetensors)\n"
   "  --data FILE        one tensor per model input with a leading example dimension\n"
   "  --threads N        threads (default: KILN_NUM_THREADS, else every core)\n"
   "  --precision P      fp32 (default), bf16 (GEMM operands rounded to bf16, f32 sums)\n"
   "                     or int8 (linear layers: int8 operands, int32 sums; docs/precision.md)\n",
   " set max-nodes max-config max-memory weights data threads loss verbose disable-pass precision cache-dir no-cache cache-size "},
  {"compile", cmd_compile,
   "kiln compile MODEL -o EXE|DIR [--emit exe|lib] [--weights W] [--cpu native|x86-64-v3|"
   "x86-64-v4|NAME] [--set NAME=VALUE]...",
   "Compile MODEL ahead of time into a standalone executable (default) or a static library\n"
   "with a C header: the same kernels and plan as the JIT, no LLVM and no model file at\n"
   "run time (docs/aot.md). Every output and loss is compiled; the executable runs like\n"
   "`kiln run`: EXE --inputs IN -o OUT [--weights W] [--threads N] [--iters N].\n"
   "  -o, --output PATH  the executable, or with --emit lib the directory for\n"
   "                     libkiln_model.a, libkiln_rt.a and kiln_model.h\n"
   "  --emit exe|lib     what to build (default exe)\n"
   "  --weights FILE     embed these parameters (checked and converted now); they can\n"
   "                     still be replaced at run time. Without it, running needs weights\n"
   "  --cpu NAME         target: native (default: this host, or KILN_CPU), x86-64-v3 (AVX2),\n"
   "                     x86-64-v4 (AVX-512), or any CPU name LLVM knows (llc -mcpu=help)\n"
   "  --precision P      fp32 (default), bf16 or int8 (as kiln run --precision P, bitwise\n"
   "                     on the same CPU target; docs/precision.md)\n"
   "Needs `cc` (or $CC); the runtime library is found next to kiln or via KILN_RT_LIB.\n",
   " set max-nodes max-config output weights cpu emit disable-pass precision "},
  {"cache", cmd_cache, "kiln cache info|clear [--cache-dir DIR] [--cache-size SIZE]",
   "The compile cache of kernel objects (docs/cache.md): every command that compiles (run,\n"
   "grad, train, bench, eval) reuses the kernels an earlier run compiled for the same code,\n"
   "target and versions, and compiles and stores only the rest.\n"
   "  info               print dir, entries, bytes and limit_bytes\n"
   "  clear              remove every entry\n"
   "  --cache-dir DIR    the cache (default: $XDG_CACHE_HOME/kiln, else ~/.cache/kiln)\n"
   "  --cache-size SIZE  the limit info reports (as for the commands that compile)\n",
   " cache-dir cache-size "},
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
          "  --max-nodes N      refuse a model whose blocks expand to more than N nodes\n"
          "                     (default 100000)\n"
          "  --max-config N     refuse a model with more than N config entries (default 4096)\n"
          "  --max-memory SIZE  (run, grad, train, bench, eval) refuse a program whose buffers\n"
          "                     need more than SIZE bytes (512M, 8G; default: physical memory)\n"
          "  --cache-dir DIR    (run, grad, train, bench, eval) the compile cache of kernels\n"
          "                     (default: $XDG_CACHE_HOME/kiln, else ~/.cache/kiln; docs/cache.md)\n"
          "  --no-cache         compile every kernel, read and write no cache\n"
          "  --cache-size SIZE  the cache's limit, least recently used entries removed past\n"
          "                     it (default 1G)\n"
          "  -h, --help         help (`kiln COMMAND --help` for one command)\n\n"
          "exit codes: 0 success, 1 a problem with the model or tensor files, 2 a bad command line\n"
          "docs: docs/model-format.md (model files), docs/architecture.md (internals), docs/data.md (tokenize, data, eval)\n");
}

static int usage_error(const Command *c, const char *fmt, const char *arg) {
  fprintf(stderr, "kiln: ");
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "\nusage: %s\n", c ? c->usage : "kiln COMMAND MODEL [options] (kiln --help)");
  return EXIT_USAGE;
}

static bool parse_int(const char *s, long long lo, long long hi, long long *out) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || end == s || *end || v < lo || v > hi) return false;
  *out = v;
  return true;
}

// The environment, read once: the settings the commands pass down (docs/architecture.md,
// "Settings and the environment"). KILN_CPU is checked as --cpu is: a name LLVM does not
// know is refused (exit 2) rather than compiled for with pages of LLVM warnings.
static int read_environment(const Command *c, CliOptions *o) {
  rt_tuning_read(&o->tuning, getenv);
  if (o->tuning.cpu) {
    static char cpu[64];
    CgOptions scratch = {0};
    Diag d = {0};
    if (!cg_aot_target("KILN_CPU=", o->tuning.cpu, &scratch, cpu, &d))
      return usage_error(c, "%s", d.msg);
    o->tuning.vector_floats = scratch.vector_floats;  // the width LLVM gives that CPU
  }
  // The compile cache's place (XDG base directories), unless --cache-dir named one.
  static char cache_dir[4096];
  const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
  if (o->cache_dir) {
  } else if (xdg && xdg[0] == '/' && snprintf(cache_dir, sizeof cache_dir, "%s/kiln", xdg) < (int)sizeof cache_dir) {
    o->cache_dir = cache_dir;
  } else if (home && home[0] && snprintf(cache_dir, sizeof cache_dir, "%s/.cache/kiln", home) < (int)sizeof cache_dir) {
    o->cache_dir = cache_dir;
  }
  o->cc = getenv("CC");
  o->path = getenv("PATH");
  o->tmpdir = getenv("TMPDIR");
  o->rt_lib = getenv("KILN_RT_LIB");
  o->include = getenv("KILN_INCLUDE");
  o->keep_tmp = getenv("KILN_KEEP_TMP") != NULL;
  const char *hook = getenv("KILN_TEST_INTERRUPT_AT_STEP");  // kiln train's test hooks
  o->test_interrupt_at = hook ? atoll(hook) : 0;
  hook = getenv("KILN_TEST_AWAIT_SIGNAL_AT_STEP");
  o->test_await_signal_at = hook ? atoll(hook) : 0;
  const char *procs = getenv("OMPI_COMM_WORLD_SIZE");  // Open MPI's mpirun; MPICH's and Slurm's PMI
  if (!procs) procs = getenv("PMI_SIZE");
  o->launched_procs = procs ? atoi(procs) : 0;
  const char *overlap = getenv("KILN_DIST_NO_OVERLAP");
  o->dist_no_overlap = overlap && strcmp(overlap, "0") != 0;
  return 0;
}

// A compile cache that cannot be used (a file, a read-only directory) is not worth failing
// a command for: one warning, then the command compiles everything and caches nothing.
static void check_cache(const Command *c, CliOptions *o) {
  Diag d = {0};
  if (o->no_cache || !o->cache_dir || !strstr(c->opts, " no-cache ")) return;
  if (o->backend && strcmp(o->backend, "ref") == 0) return;  // compiles nothing
  if (rt_cache_usable(o->cache_dir, &d)) return;
  fprintf(stderr, "kiln: warning: compile cache %s; compiling without it (--no-cache or "
          "--cache-dir DIR to choose)\n", d.msg);
  o->cache_dir = NULL;
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

  CliOptions o = {.cmd = c->name, .threads = 0, .n_train = -1, .n_val = -1, .n_test = -1,
                  .bucket_mb = KILN_DEFAULT_BUCKET_MB};
  bool options_end = false;  // after "--" every argument is positional (kiln tokenize -- "-1 ...")
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    const char *val = i + 1 < argc ? argv[i + 1] : NULL;
    if (!options_end && strcmp(a, "--") == 0) {
      options_end = true;
      continue;
    }
    if (options_end) {
      if (o.model || strcmp(c->name, "ops") == 0) return usage_error(c, "unexpected argument \"%s\"", a);
      o.model = a;
      continue;
    }
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
    } else if (strcmp(a, "--train") == 0 && strcmp(c->name, "data") != 0) {
      o.train = true;  // bench --train (data synth's --train N is parsed below)
    } else if (strcmp(a, "--grad") == 0) {
      o.grad = true;
    } else if (strcmp(a, "--profile") == 0) {
      o.profile = true;
    } else if (strcmp(a, "--check-replicas") == 0) {
      o.check_replicas = true;
    } else if (strcmp(a, "--trace") == 0) {
      TAKES_VALUE();
      o.trace = val;
    } else if (strcmp(a, "--memory") == 0) {
      o.memory = true;
    } else if (strcmp(a, "--recompute") == 0) {
      TAKES_VALUE();
      if (strcmp(val, "layers") != 0) return usage_error(c, "--recompute takes \"layers\", not \"%s\"", val);
      o.recompute_layers = true;
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
      if (!pass_find(val)) return usage_error(c, "--after \"%s\": no such pass (see `kiln ops`)", val);
      o.after = val;
    } else if (strcmp(a, "--disable-pass") == 0) {
      TAKES_VALUE();
      if (o.n_disabled == 64) return usage_error(c, "too many --disable-pass options%s", "");
      const Pass *pass = pass_find(val);
      if (!pass) return usage_error(c, "--disable-pass \"%s\": no such pass (see `kiln ops`)", val);
      if (pass->required)
        return usage_error(c, "--disable-pass \"%s\": this pass cannot be disabled (it is not an optimisation)", val);
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
    } else if (strcmp(a, "--max-nodes") == 0) {
      TAKES_VALUE();
      long long v;
      if (!parse_int(val, 1, 1000000000LL, &v))
        return usage_error(c, "--max-nodes must be an integer in [1, 1000000000], not \"%s\"", val);
      o.max_nodes = v;
    } else if (strcmp(a, "--max-config") == 0) {
      TAKES_VALUE();
      long long v;
      if (!parse_int(val, 1, 10000000LL, &v))
        return usage_error(c, "--max-config must be an integer in [1, 10000000], not \"%s\"", val);
      o.max_config = v;
    } else if (strcmp(a, "--max-memory") == 0 || strcmp(a, "--cache-size") == 0) {
      TAKES_VALUE();
      if (!rt_parse_size(val, strcmp(a, "--max-memory") == 0 ? &o.max_memory : &o.cache_bytes)) {
        char fmt[160];
        snprintf(fmt, sizeof fmt, "%s must be a size in bytes (a whole number, or with K, M, G or T: "
                 "1024 to the 1st to 4th power), not \"%%s\"", a);
        return usage_error(c, fmt, val);
      }
    } else if (strcmp(a, "--cache-dir") == 0) {
      TAKES_VALUE();
      if (!*val) return usage_error(c, "--cache-dir needs a directory, not \"%s\"", val);
      o.cache_dir = val;
    } else if (strcmp(a, "--no-cache") == 0) {
      o.no_cache = true;
    } else if (strcmp(a, "--output-attentions") == 0) {
      o.output_attentions = true;
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
    } else if (strcmp(a, "--init") == 0) {
      TAKES_VALUE();
      o.init = val;
    } else if (strcmp(a, "--optimizer") == 0) {
      TAKES_VALUE();
      if (strcmp(val, "adamw") != 0 && strcmp(val, "sgd") != 0)
        return usage_error(c, "--optimizer must be adamw or sgd, not \"%s\"", val);
      o.optimizer = val;
    } else if (strcmp(a, "--eval-data") == 0) {
      TAKES_VALUE();
      o.eval_data = val;
    } else if (strcmp(a, "--steps") == 0 || strcmp(a, "--checkpoint-every") == 0 || strcmp(a, "--eval-every") == 0 ||
               strcmp(a, "--accumulate") == 0) {
      TAKES_VALUE();
      long long v;
      if (!parse_int(val, 1, 1000000000, &v)) {
        char fmt[96];
        snprintf(fmt, sizeof fmt, "%s must be an integer in [1, 1000000000], not \"%%s\"", a);
        return usage_error(c, fmt, val);
      }
      if (strcmp(a, "--steps") == 0) o.steps = (int)v;
      else if (strcmp(a, "--eval-every") == 0) o.eval_every = (int)v;
      else if (strcmp(a, "--accumulate") == 0) o.accumulate = (int)v;
      else o.checkpoint_every = (int)v;
    } else if (strcmp(a, "--lr") == 0) {
      TAKES_VALUE();
      char *end;
      errno = 0;
      double v = strtod(val, &end);
      if (errno || end == val || *end || !(v > 0) || v > 1e3)
        return usage_error(c, "--lr must be a number in (0, 1000], not \"%s\"", val);
      o.lr = v;
    } else if (strcmp(a, "--bucket-mb") == 0) {
      TAKES_VALUE();
      char *end;
      errno = 0;
      double v = strtod(val, &end);
      if (errno || end == val || *end || !(v >= 0) || v > 1e6)
        return usage_error(c, "--bucket-mb must be a number in [0, 1000000], not \"%s\"", val);
      o.bucket_mb = v;
    } else if (strcmp(a, "--cpu") == 0) {
      TAKES_VALUE();
      if (!*val) return usage_error(c, "--cpu needs a CPU name, not \"%s\"", val);
      o.cpu = val;
    } else if (strcmp(a, "--precision") == 0) {
      TAKES_VALUE();
      if (strcmp(val, "fp32") == 0) o.precision = KILN_PRECISION_FP32;
      else if (strcmp(val, "bf16") == 0) o.precision = KILN_PRECISION_BF16;
      else if (strcmp(val, "int8") == 0) o.precision = KILN_PRECISION_INT8;
      else return usage_error(c, "--precision must be fp32, bf16 or int8, not \"%s\"", val);
    } else if (strcmp(a, "--dtype") == 0) {
      TAKES_VALUE();
      if (strcmp(val, "f32") != 0 && strcmp(val, "bf16") != 0)
        return usage_error(c, "--dtype must be f32 or bf16, not \"%s\"", val);
      o.weights_bf16 = strcmp(val, "bf16") == 0;
    } else if (strcmp(a, "--emit") == 0) {
      TAKES_VALUE();
      if (strcmp(val, "exe") != 0 && strcmp(val, "lib") != 0)
        return usage_error(c, "--emit must be exe or lib, not \"%s\"", val);
      o.emit = val;
    } else if (strcmp(a, "--threads") == 0) {
      TAKES_VALUE();
      long long v;
      if (!parse_int(val, 1, 1024, &v))
        return usage_error(c, "--threads must be an integer in [1, 1024], not \"%s\"", val);
      o.threads = (int)v;
    } else if (strcmp(a, "--model") == 0) {
      TAKES_VALUE();
      o.hf_model = val;
    } else if (strcmp(a, "--vocab") == 0) {
      TAKES_VALUE();
      o.vocab = val;
    } else if (strcmp(a, "--text") == 0) {
      TAKES_VALUE();
      o.text = val;
    } else if (strcmp(a, "--tokens") == 0) {
      o.tokens = true;
    } else if (strcmp(a, "--train") == 0 || strcmp(a, "--val") == 0 || strcmp(a, "--test") == 0) {
      TAKES_VALUE();
      long long v;
      if (!parse_int(val, 0, 10000000, &v))
        return usage_error(c, "the number of examples must be an integer in [0, 10000000], not \"%s\"", val);
      *(a[2] == 't' && a[3] == 'r' ? &o.n_train : a[2] == 'v' ? &o.n_val : &o.n_test) = (int)v;
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
  if (!o.model && strcmp(c->name, "tokenize") == 0) return usage_error(c, "tokenize needs the TEXT%s", "");
  if (!o.model && strcmp(c->name, "data") == 0) return usage_error(c, "data needs a subcommand (synth)%s", "");
  if (!o.model && strcmp(c->name, "convert-hf") == 0) return usage_error(c, "convert-hf needs the checkpoint DIR%s", "");
  if (!o.model && strcmp(c->name, "cache") == 0) return usage_error(c, "cache needs a subcommand (info, clear)%s", "");
  if (!o.model && strcmp(c->name, "ops") != 0) return usage_error(c, "%s needs a MODEL file", c->name);
  if (o.text && !o.vocab) return usage_error(c, "--text needs --vocab FILE%s", "");
  if (o.eval_every && !o.eval_data) return usage_error(c, "--eval-every needs --eval-data VAL%s", "");
  int rc = read_environment(c, &o);
  if (!rc) rc = cli_check_output(&o);  // before any work: -o must not destroy an input
  if (!rc) check_cache(c, &o);
  return rc ? rc : c->run(&o);
}
