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
#include "runtime/trace.h"
#include "runtime/tuning.h"

typedef struct KilnModel KilnModel;

typedef enum { KILN_BACKEND_JIT, KILN_BACKEND_REF } KilnBackend;

// The GEMMs' arithmetic (--precision; docs/precision.md). BF16: operands rounded to bf16,
// products summed in f32 (the precision pass marks the matmuls; both backends honour it);
// INT8: linear layers' weights quantised per output channel, activations per row, int32
// sums. Both inference only for now.
typedef enum { KILN_PRECISION_FP32, KILN_PRECISION_BF16, KILN_PRECISION_INT8 } KilnPrecision;

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
  // With grad_loss: keep only each encoder layer's input (each instance of a repeated block
  // call) for the backward and recompute the layer's values there (--recompute layers;
  // activation checkpointing: less memory, one more forward; the same bits).
  bool recompute_layers;
  KilnPrecision precision;  // FP32 (the zero value) unless asked
  const char *const *disabled_passes;  // --disable-pass NAME ("memplan" is honoured by codegen)
  int n_disabled_passes;
  const char *dump_llvm;  // a folder for the optimised LLVM IR, or NULL
  int threads;            // 0: tuning.threads, else every core
  int64_t max_nodes;      // refuse models whose blocks expand to more nodes (0: 100000)
  int64_t max_config;     // refuse models with more config entries (0: 4096)
  const char *const *output_groups;  // the model's output groups to add as outputs
  int n_output_groups;               // ("attentions": kiln run --output-attentions)
  uint64_t max_memory;    // refuse programs whose buffers need more bytes (0: physical memory)
  RtTuning tuning;
  // The compile cache (docs/cache.md): a directory for compiled kernels (NULL: none) and
  // its size limit (0: 1 GiB); notes about it go to log.
  const char *cache_dir;
  uint64_t cache_bytes;
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
int64_t kiln_param_values(const KilnModel *m);  // the parameters' element count

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
  int cache_hits, cache_misses;  // kernel groups from the compile cache, and compiled
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
// Every input not bound yet: integers 0 (valid ids and labels), floats 1 (full masks): what
// benchmarks run on when no inputs are given.
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
// Every later run records what each thread did in each step into t (initialised by the
// caller with rt_trace_init for the model's threads; NULL stops recording). JIT only.
bool kiln_trace(KilnModel *m, RtTrace *t, Diag *d);
// Writes t as Chrome trace-event JSON (Perfetto, chrome://tracing; docs/trace.md), atomically.
bool kiln_trace_write(const KilnModel *m, const RtTrace *t, const char *path, Diag *d);

// ---- reading ----------------------------------------------------------------------------------
// The selected output `name` after a run, in its dtype: t->data is valid until the next run.
// On the JIT also any input or parameter the program holds, whose data may be written
// (a parameter's change is seen by the next run: its packed copy is made again); on the
// reference backend any input or parameter bound or initialised, converted to its dtype
// (read-only: the values are doubles).
bool kiln_tensor(KilnModel *m, const char *name, StTensor *t, Diag *d);
// Copies every parameter dst holds from src by name (same shape and dtype; JIT).
bool kiln_copy_params(KilnModel *dst, KilnModel *src, Diag *d);
// Writes the selected outputs (safetensors, atomically).
bool kiln_write_outputs(KilnModel *m, const char *path, Diag *d);
// Writes every parameter by name (after kiln_bind_params or kiln_init_params).
bool kiln_write_params(KilnModel *m, const char *path, Diag *d);
// The same with f32 parameters written as `floats` (a DType): DT_F32, or DT_BF16 (each
// value rounded to the nearest bf16, ties to even; `kiln init --dtype bf16`).
bool kiln_write_params_as(KilnModel *m, const char *path, int floats, Diag *d);

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

// ---- training (api/train.c) ---------------------------------------------------------------
// A KilnTrainer compiles a model's loss, its gradients and the optimiser's update into one
// JIT program (training mode: dropout on); each step binds the step's batch of its data
// (a seeded permutation per epoch; pre-training data masked per step), runs, and updates
// parameters and optimiser state. Everything random depends only on (seed, step), so a
// run resumed from a checkpoint ends with the weights of an uninterrupted one.
typedef struct KilnTrainer KilnTrainer;

#define KILN_DEFAULT_BUCKET_MB 25  // PyTorch DDP's bucket_cap_mb (docs/distributed.md)
typedef struct KilnTrainOptions {
  const char *optimizer;  // "adamw" (NULL) or "sgd": betas 0.9/0.999, eps 1e-6, weight decay
                          // 0.01 (not biases or LayerNorm weights), momentum 0.9
  double lr;              // peak learning rate; 0: 1e-4 (AdamW) or 1e-2 (SGD)
  int64_t steps;          // the run's length: 10% linear warm-up, then linear decay to 0
  double clip;            // global gradient-norm clipping; 0: 1
  const char *loss;       // NULL: "loss"
  uint64_t seed;          // data order, dropout, masking
  // Compile only the loss and gradients; the caller applies the update itself between
  // kiln_trainer_step and the next, through kiln_trainer_param (the tests' C oracle).
  bool external_update;
  // Data parallel (dist/dist.h, docs/distributed.md): the processes of comm (NULL: this one
  // alone) each take `batch` examples of the step's global batch of size x batch, in rank
  // order, and average their gradients before the update; the loss a step returns is the
  // global one. Not with external_update.
  struct DistComm *comm;
  bool check_replicas;  // after every step, fail unless every process holds the same bits
  bool no_overlap;      // start the all-reduces after the backward, not during it (to measure)
  // Data parallel: gradients are all-reduced in buckets of at least bucket_mb MiB of
  // consecutive gradients in the order the backward finishes them (each started once its
  // last gradient is done), copied into a buffer of their own; 0: one all-reduce per
  // gradient, from its own buffer. kiln train's default: KILN_DEFAULT_BUCKET_MB.
  double bucket_mb;
  // Gradient accumulation: a step is accumulate (0, 1: one) forward-backward passes of
  // `batch` examples each, their gradients averaged, then one update: a global batch of
  // processes x accumulate x batch.
  int accumulate;
} KilnTrainOptions;

bool kiln_trainer_open(const char *path, const KilnOptions *opt, const KilnTrainOptions *t, KilnTrainer **out,
                       Diag *d);
// The memory of a program, from the memory plan of what kiln_compile would compile (lowered,
// no LLVM optimisation, no JIT): what `kiln check --memory` prints. Bytes.
typedef struct KilnMemory {
  uint64_t arena;        // the planned arena (the sum of all buffers with memplan disabled)
  uint64_t lower_bound;  // the most bytes live at one step
  uint64_t unplanned;    // the sum of the arena's buffers
  uint64_t pinned;       // of which live over the whole run (outputs, gradients, packed weights)
  int steps, in_place;   // plan steps; buffers written over the one they replace
  uint64_t params;       // the parameters' own buffers
  uint64_t pack_only;    // of which read only by packing (held packed only after the first run)
  uint64_t largest_pack_only;
  uint64_t packed;       // the packed weights pinned in the arena (0: packed in every run, into
                         // scratch of the arena that dies with its GEMM: a trainer's)
  uint64_t inputs;       // the inputs' own buffers (the batch; a trainer's learning rate), not state
  uint64_t state;        // a trainer's optimiser state (AdamW's m and v, SGD's m): inputs of their own
  uint64_t grads;        // a trainer's gradients: in the arena, pinned
} KilnMemory;
// The memory of the program kiln_trainer_open(path, opt, t) compiles: the same passes,
// outputs and compiler options, planned without compiling. One process, no accumulation
// (their gradient sums are not counted).
bool kiln_trainer_memory(const char *path, const KilnOptions *opt, const KilnTrainOptions *t, KilnMemory *out,
                         Diag *d);
void kiln_trainer_free(KilnTrainer *t);
// The compiled model: bind or initialise its parameters with kiln_bind_params /
// kiln_init_params, and read it with kiln_tensor.
KilnModel *kiln_trainer_model(KilnTrainer *t);
// Starting from other weights (--init): every parameter f holds is taken (its shape must
// match), the others get their initialisers' values for seed (an initialiser copy(P) takes
// f's P when f has it). On notes (if not NULL): the counts and the first initialised
// names, and the tensors of f that are not parameters.
bool kiln_trainer_init_from(KilnTrainer *t, const StFile *f, uint64_t seed, FILE *notes, Diag *d);
// Resuming: the parameters and the optimiser state of a checkpoint; *done: its steps done.
// f may be opened with st_open: its tensors are then read one at a time, never whole.
bool kiln_trainer_resume(KilnTrainer *t, const StFile *f, int64_t *done, Diag *d);
// The training data (and, for pre-training data from `kiln data synth`, its masking).
bool kiln_trainer_data(KilnTrainer *t, const StFile *f, Diag *d);
int64_t kiln_trainer_batch(const KilnTrainer *t);  // this process's share of a step
int64_t kiln_trainer_steps(const KilnTrainer *t);
double kiln_trainer_lr(const KilnTrainer *t, int64_t step);  // step: 0-based
typedef struct KilnStepResult {
  double loss, lr, grad_norm;  // grad_norm: before clipping (0 with external_update)
  double reduce_wait_s;        // data parallel: time waiting for the gradients' sums after the backward
  double reduce_bytes;         // data parallel: the bytes summed
  int reduce_buckets;          // data parallel: in this many all-reduces (KilnTrainOptions.bucket_mb)
} KilnStepResult;
// Step `step` (0-based): binds its batch (without kiln_trainer_data: the model's inputs as
// bound, e.g. kiln_default_inputs for benchmarks), runs forward and backward and (unless
// external_update) the update. Fails on a data error or a non-finite loss.
bool kiln_trainer_step(KilnTrainer *t, int64_t step, KilnStepResult *r, Diag *d);
// One parameter's buffers (f32, numel values each): value and gradient, optimiser state
// m and v (v: AdamW only, else NULL). Writing value or state is seen by the next step.
typedef struct KilnParamView {
  const char *name;
  int64_t numel;
  float *value, *m, *v;
  const float *grad;
  bool decay;    // weight decay applies
  bool reached;  // the loss depends on it (else optimisers leave it alone, as torch does)
} KilnParamView;
int kiln_trainer_n_params(const KilnTrainer *t);
KilnParamView kiln_trainer_param(KilnTrainer *t, int i);
// Writes the parameters by name, with the optimiser state ("adam.m.<name>", "adam.v.<name>"
// or "sgd.m.<name>") and the counters "train.step" (= done) and "train.steps" when
// with_state (a checkpoint), atomically.
bool kiln_trainer_save(KilnTrainer *t, const char *path, int64_t done, bool with_state, Diag *d);
// The name of the checkpoint after `step` steps of a run writing `out`:
// "out.safetensors" -> "out.step-10.safetensors" (.safetensors added when out lacks it).
void kiln_checkpoint_path(const char *out, int64_t step, char *buf, size_t size);

// Hugging Face checkpoints (api/convert_hf.c; `kiln convert-hf`, kiln.convert_hf): dir's
// config.json mapped to --set values of the model file, every parameter read from
// dir/model.safetensors (or dir/pytorch_model.bin, turned into a temporary safetensors beside
// output by `python torch_script`: pickles are never parsed here) with its shape, converted
// to its dtype and written to output; the settings to output.sets, one --set a line.
typedef struct KilnConvertOptions {
  const char *dir, *output;
  const char *model;         // the model file, or NULL: models_dir's for config.json's architectures
  const char *models_dir;    // NULL: "models"
  const char *python;        // an interpreter with PyTorch (NULL or "": pytorch_model.bin is refused)
  const char *torch_script;  // python/kiln_torch_to_safetensors.py (exit 3: no torch)
  FILE *notes;               // the checkpoint's tensors that are no parameter, a line each (or NULL)
} KilnConvertOptions;

enum { KILN_CONVERT_MAX_SETS = 16 };
typedef struct KilnConverted {  // what kiln_convert_hf chose (sets point into values)
  char model[4096];
  int n_params, n_sets;
  KilnSet sets[KILN_CONVERT_MAX_SETS];
  char values[KILN_CONVERT_MAX_SETS][32];
} KilnConverted;
bool kiln_convert_hf(const KilnConvertOptions *o, KilnConverted *r, Diag *d);

#endif
