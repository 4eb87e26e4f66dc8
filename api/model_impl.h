// Inside the library: what a KilnModel holds, for api/'s own files (model.c, data.c, the
// trainer). Clients see only api/kiln.h.
#ifndef KILN_MODEL_IMPL_H
#define KILN_MODEL_IMPL_H

#include "api/kiln.h"
#include "codegen/compile.h"
#include "ir/ir.h"
#include "passes/passes.h"

struct KilnModel {
  KilnOptions o;
  IrGraph g;
  bool loaded;
  // The selection: outputs written in this order under these names.
  const IrNode **out;
  const char **out_name;
  int n_out;
  bool *bound;     // per node: an input or parameter given a value
  bool *need;      // per node: a selected output needs it (set by kiln_compile)
  const char *inputs_path;  // the last inputs file (messages)
  bool compiled, prepared;
  CgProgram p;     // JIT
  IrValues vals;   // reference
  void *out_buf;   // reference: kiln_output's conversion of one output
  int threads;
  bool no_memplan;  // --disable-pass memplan
  const IrNode **inputs, **params;  // the graph's, in graph order
  int n_inputs, n_params;
  bool want_params;  // compile buffers for every parameter, needed or not (the trainer)
  RtTrace *trace;    // kiln_trace: runs record into it
};

// kiln_model_open with the trainer's passes in the pipeline, when train is not NULL: its
// optimizer (the update) and loss_denominators (the other fields are opt's).
bool kiln_model_open_with(const char *path, const KilnOptions *opt, const PassOptions *train,
                          KilnModel **out, Diag *d);

// kiln_run (JIT) of one phase, for the trainer's data parallelism and accumulation: the
// steps s whose mask phase[s] has bit `which`, after(ctx, s) (if not NULL) on the calling
// thread after each (rt_plan_run_phase).
typedef struct KilnRunPhase {
  const unsigned char *phase;  // per plan step: a mask of the phases it runs in
  int which;
  RtStepHook after;
  void *ctx;
  // Dropout draws the masks of rows share·batch ... of a step share + 1 times as large
  // (cg_dropout_key): the trainer's process and micro-batch, so that their masks are the
  // whole step's. 0: the run's own rows.
  uint64_t share;
} KilnRunPhase;
bool kiln_run_phase(KilnModel *m, uint64_t seed, const KilnRunPhase *ph, Diag *d);

// The memory plan of the program kiln_compile(m) would compile (its outputs, parameters for
// a trainer, and compiler options), without compiling it; state and grads left 0.
bool kiln_memory_plan(const KilnModel *m, KilnMemory *out, Diag *d);

static inline bool kiln_is_jit(const KilnModel *m) { return m->o.backend == KILN_BACKEND_JIT; }

#endif
