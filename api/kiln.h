// kiln.h: the public C API — how the commands, the tests, and later the Python package and
// distributed training reach a compiled model. A KilnModel is a model file loaded with its
// settings and run through the pass pipeline; it is compiled for a set of outputs (on the
// JIT, or evaluated on the double-precision reference backend), bound to tensors by name,
// run, and read back by name:
//
//   KilnModel *m;
//   kiln_model_open("models/visualbert-vqa.json", &opts, &m, &d)   // load, passes
//   kiln_select_given(m, &inputs_file, &d)                         // what the inputs allow
//   kiln_compile(m, &d)                                            // LLVM (JIT backend)
//   kiln_bind_params(m, &weights_file, &d); kiln_bind_inputs(m, &inputs_file, &d)
//   kiln_run(m, seed, &d); kiln_write_outputs(m, "out.safetensors", &d)
//   kiln_model_free(m)
//
// Every function that can fail returns false and says why in d (a message naming the file,
// the tensor or the model-file place); none exits or prints except to KilnOptions.log.
#ifndef KILN_API_H
#define KILN_API_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "runtime/diag.h"
#include "runtime/safetensors.h"
#include "runtime/tuning.h"

typedef struct KilnModel KilnModel;

typedef enum { KILN_BACKEND_JIT, KILN_BACKEND_REF } KilnBackend;

typedef struct KilnSet {  // a config override, as `--set NAME=VALUE`
  const char *name, *value;
} KilnSet;

typedef struct KilnOptions {
  KilnBackend backend;
  const KilnSet *sets;
  int n_sets;
  // Differentiate this loss (NULL: inference): the outputs become the loss, written as
  // "loss", and every parameter's gradient, written under the parameter's name.
  const char *grad_loss;
  bool training;  // dropout active (masks from the run's seed); false: dropout is the identity
  const char *const *disabled_passes;  // --disable-pass NAME ("memplan" is honoured by codegen)
  int n_disabled_passes;
  const char *dump_llvm;  // a folder for the optimised LLVM IR, or NULL
  int threads;            // 0: tuning.threads, else every core
  RtTuning tuning;
  FILE *log;              // progress and notes (compiled kernels, skipped outputs), or NULL
} KilnOptions;

// opt's arrays (sets, disabled passes) are read during the call only.
bool kiln_model_open(const char *path, const KilnOptions *opt, KilnModel **out, Diag *d);
void kiln_model_free(KilnModel *m);

// ---- what the model has -----------------------------------------------------------------
typedef enum { KILN_INPUT, KILN_PARAM, KILN_OUTPUT } KilnRole;
typedef struct KilnTensorInfo {
  const char *name;
  int dtype;  // DType (runtime/dtype.h)
  int rank;
  int64_t shape[ST_MAX_RANK];
  const char *where;  // its model-file place
} KilnTensorInfo;
// KILN_OUTPUT: the selected outputs in the order they are written (all of them until
// kiln_select_* narrows them).
int kiln_count(const KilnModel *m, KilnRole role);
KilnTensorInfo kiln_info(const KilnModel *m, KilnRole role, int i);
// The input, parameter or selected output `name`: false when there is none.
bool kiln_find(const KilnModel *m, KilnRole role, const char *name, KilnTensorInfo *t);
const char *kiln_model_file(const KilnModel *m);
double kiln_gflop(const KilnModel *m);  // one run of the whole graph

// ---- choosing what to compute -------------------------------------------------------------
// Keeps the outputs (and losses) computable from the inputs that f holds, in declaration
// order; those skipped are noted on the log. Fails, naming the missing inputs, when none is.
bool kiln_select_given(KilnModel *m, const StFile *f, Diag *d);

// ---- compiling ------------------------------------------------------------------------------
// Compiles what the selected outputs need (JIT: lowering, LLVM, buffers; reference: nothing).
bool kiln_compile(KilnModel *m, Diag *d);
typedef struct KilnStats {
  int kernels, steps;
  int threads;  // what runs use
  double compile_ms, lower_ms, llvm_ms;
} KilnStats;
KilnStats kiln_stats(const KilnModel *m);

// ---- binding ----------------------------------------------------------------------------------
// Every parameter the selection needs, from f by name (shape must match; dtypes converted
// when no value changes). Extra tensors are listed on the log.
bool kiln_bind_params(KilnModel *m, const StFile *f, Diag *d);
// Parameters from their initialisers, deterministic for seed (as `kiln init`).
bool kiln_init_params(KilnModel *m, uint64_t seed, Diag *d);
// The inputs f holds (checked like parameters); inputs it lacks keep their values.
bool kiln_bind_inputs(KilnModel *m, const StFile *f, Diag *d);
// Every input: integers 0 (valid ids and labels), floats 1 (full masks): what benchmarks
// run on when no inputs are given.
void kiln_default_inputs(KilnModel *m);

// ---- running ----------------------------------------------------------------------------------
// Runs once (dropout masks from seed when training). Fails naming the first input the
// outputs need that was never bound, or a data error (an id out of range) and its node.
bool kiln_run(KilnModel *m, uint64_t seed, Diag *d);
// kiln_run that adds each step's wall time (ms) to step_ms[0 .. kiln_stats().steps) (JIT).
bool kiln_run_profiled(KilnModel *m, uint64_t seed, double *step_ms, Diag *d);
typedef struct KilnStep {
  const char *node;    // the node it computes
  const char *label;   // its op, fused nodes by kind ("gemm+gelu", ...)
  const char *kernel;  // the kernel's symbol
  bool once;           // run after binding parameters only (packing weights)
} KilnStep;
KilnStep kiln_step(const KilnModel *m, int s, char *label_buf, size_t label_size);

// ---- reading ----------------------------------------------------------------------------------
// The selected output `name` after a run, in its dtype: t->data is valid until the next run.
// On the JIT also any input or parameter the program holds, whose data may be written
// (a parameter's change is seen by the next run: its packed copy is made again).
bool kiln_tensor(KilnModel *m, const char *name, StTensor *t, Diag *d);
// Copies every parameter dst holds from src by name (same shape and dtype; JIT).
bool kiln_copy_params(KilnModel *dst, KilnModel *src, Diag *d);
// Writes the selected outputs (safetensors, atomically).
bool kiln_write_outputs(KilnModel *m, const char *path, Diag *d);

// ---- data files (kiln train, kiln eval): one tensor per model input, examples first -----
typedef struct KilnData KilnData;
// Converts, for every input the compiled program reads, the data file's tensor of that name
// into the input's dtype: shape (examples, ...the input's shape without its batch dim...).
// Inputs placed at skip_where (NULL: none) are not data (the optimiser's scalars). Errors
// name the file and the tensor. The data may be bound to other models by input name.
bool kiln_data_open(KilnModel *m, const StFile *f, const char *skip_where, KilnData **out, Diag *d);
int64_t kiln_data_examples(const KilnData *x);
// Copies examples ex[0 .. batch) (batch: the model's inputs' leading dimension) into the
// model's input buffers; inputs the data lacks are left alone.
bool kiln_data_bind(KilnModel *m, const KilnData *x, const int64_t *ex, Diag *d);
// The same for examples first .. first + batch - 1.
bool kiln_data_bind_range(KilnModel *m, const KilnData *x, int64_t first, Diag *d);
void kiln_data_free(KilnData *x);
// The model's config entry `name` (e.g. "batch"), or def when it has none.
double kiln_config(const KilnModel *m, const char *name, double def);

#endif
