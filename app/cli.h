// The `kiln` command line: parsed options shared by the subcommands, and the commands.
// Exit codes: 0 success, 1 a user error (bad model, tensor file, shapes), 2 a bad command line.
#ifndef KILN_CLI_H
#define KILN_CLI_H

#include <stdbool.h>
#include <stdint.h>

#include "api/kiln.h"
#include "dist/dist.h"
#include "frontend/frontend.h"
#include "runtime/safetensors.h"
#include "runtime/tuning.h"

enum { EXIT_USER = 1, EXIT_USAGE = 2 };

#define CLI_MAX_SETS 256

typedef struct CliOptions {
  const char *cmd;
  const char *model;
  const char *weights, *inputs, *output, *after, *format, *backend, *dump_llvm, *loss;
  int iters;
  FeSet sets[CLI_MAX_SETS];
  int n_sets;
  const char *disabled[64];
  int n_disabled;
  uint64_t seed;
  int threads;
  int64_t max_nodes;  // --max-nodes: the limit on block expansion (0: the default)
  int64_t max_config;  // --max-config: the limit on config entries (0: the default)
  uint64_t max_memory; // --max-memory: the limit on a compiled program's buffers (0: physical)
  // train
  const char *data, *optimizer, *resume;
  const char *init;             // train --init W: start from W, initialise what it lacks
  const char *eval_data;        // train --eval-data: score the weights on it during training
  int steps, checkpoint_every;  // 0: not given
  int accumulate;               // train --accumulate K: K forward-backward passes a step (0: 1)
  double bucket_mb;             // train --bucket-mb: all-reduce bucket size (KILN_DEFAULT_BUCKET_MB)
  int eval_every;               // train: with --eval-data, every N steps (0: at the end only)
  // train's test hooks (KILN_TEST_INTERRUPT_AT_STEP=K: raise SIGINT during step K;
  // KILN_TEST_AWAIT_SIGNAL_AT_STEP=K: pause in step K until a signal comes, at most a minute)
  int64_t test_interrupt_at, test_await_signal_at;
  bool check_replicas;          // train --check-replicas: every process holds the same bits
  // The processes a launcher started (OMPI_COMM_WORLD_SIZE, PMI_SIZE: mpirun -np N), 0 when
  // none did: kiln train trains data-parallel across them (docs/distributed.md).
  int launched_procs;
  bool dist_no_overlap;         // KILN_DIST_NO_OVERLAP=1: all-reduces after the backward (to measure)
  double lr;                    // 0: not given (the optimiser's default)
  bool verbose, help, grad;  // grad: dump/check the joint forward+backward graph
  bool profile;              // bench: time every step and print where the time goes
  const char *trace;         // bench, train: write a Chrome trace of the runs here
  bool memory;               // check --memory: the memory plan's sizes
  bool train;                // bench: time training steps (forward, backward, update)
  // tokenize, run --text, data synth
  const char *vocab, *text;
  bool tokens;                      // tokenize: print token strings, not ids
  int n_train, n_val, n_test;       // data synth: examples per split (-1: not given)
  KilnPrecision precision;      // --precision
  bool weights_bf16;            // init --dtype bf16
  // compile
  const char *cpu, *emit;
  const char *hf_model;  // convert-hf --model: the model file the checkpoint is for
  // From the environment, read once by main.c (docs/architecture.md, "Settings and the
  // environment"); commands pass them down, nothing below reads the environment.
  RtTuning tuning;              // KILN_CPU, KILN_NUM_THREADS, KILN_GEMM_*, ... into CgOptions
  // The compile cache (docs/cache.md): --cache-dir, else $XDG_CACHE_HOME/kiln, else
  // $HOME/.cache/kiln (NULL: neither set); --no-cache; --cache-size (0: 1 GiB).
  const char *cache_dir;
  bool no_cache;
  bool recompute_layers;  // --recompute layers (grad, train, bench --train, check --grad)
  bool output_attentions;  // --output-attentions: the model's output group "attentions"
  uint64_t cache_bytes;
  const char *cc, *path;        // compile: $CC, else `cc` on $PATH
  const char *tmpdir;           // compile: $TMPDIR for intermediate files
  const char *rt_lib, *include; // compile: KILN_RT_LIB, KILN_INCLUDE (where the runtime is)
  bool keep_tmp;                // compile: KILN_KEEP_TMP keeps the intermediate files
} CliOptions;

int cmd_check(const CliOptions *o);
int cmd_dump(const CliOptions *o);
int cmd_ops(const CliOptions *o);
int cmd_init(const CliOptions *o);
int cmd_run(const CliOptions *o);
int cmd_bench(const CliOptions *o);
int cmd_grad(const CliOptions *o);
int cmd_train(const CliOptions *o);
int cmd_bench_train(const CliOptions *o);  // kiln bench --train (app/cmd_bench_train.c)
int cmd_tokenize(const CliOptions *o);
int cmd_convert_hf(const CliOptions *o);  // app/cmd_convert_hf.c
int cmd_data(const CliOptions *o);
int cmd_eval(const CliOptions *o);
int cmd_cache(const CliOptions *o);  // kiln cache info|clear (app/cmd_cache.c)

// kiln run --text: replaces (or adds) input_ids, token_type_ids and attention_mask in inf
// with "[CLS] text [SEP]" padded with [PAD] to the model's text length (truncated with a
// warning), token type 0 and mask 1 on [CLS] text [SEP].
bool cli_text_inputs(const KilnModel *m, const char *text, const char *vocab_path, StFile *inf, Diag *d);
int cmd_compile(const CliOptions *o);
// The trainer's options (api/kiln.h) from the command line's (kiln train, bench --train).
KilnTrainOptions cli_train_options(const CliOptions *o);

// Loads o->model with o->sets and runs the pass pipeline (for `loss`: with autodiff; NULL:
// inference); prints the error and returns false on failure.
bool cli_load(const CliOptions *o, const char *loss, IrGraph *g);
void cli_error(const Diag *d);
// Before any work: -o is not the same file as an input (exit code EXIT_USAGE) and can be
// written: absent or a regular file, in a writable directory (EXIT_USER); 0 if fine.
int cli_check_output(const CliOptions *o);
// Under mpirun (o->launched_procs > 1): joins the job (*comm; NULL when alone), or says why
// it cannot (printed; returns EXIT_USER). cli_dist_fail prints d, naming the process, and
// ends every process of the job (they may be waiting in a collective).
int cli_dist_start(const CliOptions *o, DistComm **comm);
void cli_dist_fail(DistComm *comm, Diag *d);

// The library's options from the command line's (app/cli_model.c): backend, --set (into
// sets, room for CLI_MAX_SETS), --disable-pass, --dump-llvm, --threads, -v (log on stderr).
KilnOptions cli_kiln_options(const CliOptions *o, KilnSet *sets);
// kiln_model_open(o->model) with ko; prints the error and returns NULL on failure.
KilnModel *cli_open(const CliOptions *o, const KilnOptions *ko);
// --trace FILE: the next `runs` runs of m record every thread's steps (cli_trace_begin), then
// the trace is written to o->trace (cli_trace_end, which frees it). Both do nothing without
// --trace; both return false with d set on failure.
bool cli_trace_begin(const CliOptions *o, KilnModel *m, int runs, RtTrace *t, Diag *d);
bool cli_trace_end(const CliOptions *o, KilnModel *m, RtTrace *t, Diag *d);

#endif
