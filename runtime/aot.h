// Ahead-of-time models: the tables `kiln compile` generates for one compiled model (kernel
// symbols, steps, buffers, tensor descriptions, embedded weights) and the runner that
// executes them with no LLVM and no model file: buffers, binding tensors by name with the
// same checks and messages as `kiln run`, the plan, data-error messages, output writing.
// runtime/aot_main.c is the command line of compiled executables; runtime/aot_api.c the C
// API of compiled libraries (docs/aot.md).
#ifndef KILN_AOT_H
#define KILN_AOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/diag.h"
#include "runtime/plan.h"
#include "runtime/safetensors.h"
#include "runtime/tuning.h"

#define RT_AOT_MAX_RANK 8

// Buffer ids: 0..n_nodes-1 node values, then scratch buffers, then the status word
// (int64_t[4]) and the seed (uint64_t[1]): status = n_bufs - 2, seed = n_bufs - 1.
typedef struct RtAotBuf {
  size_t bytes;  // 0: not computed (or an alias)
  int alias;     // -1, or the buffer whose memory this one shares (reshape)
} RtAotBuf;

typedef struct RtAotStep {
  RtKernel fn;
  int64_t work;
  bool once;           // reads only parameters: run after binding weights
  int n_args, args;    // buffer ids: arg_ids[args .. args + n_args)
  int node;            // node id (messages)
  uint64_t needs;      // inputs (bit k: inputs[k]) the step's node depends on
  uint64_t feeds;      // outputs (bit j: outputs[j]) that depend on it
} RtAotStep;

typedef struct RtAotTensor {
  const char *name;
  const char *where;   // model-file place (parameters)
  int dtype;           // DType
  int rank;
  int64_t shape[RT_AOT_MAX_RANK];
  int buf;
  uint64_t needs;      // outputs: the inputs they depend on
  uint64_t feeds;      // parameters: the outputs that depend on them
} RtAotTensor;

// A node whose kernels can report a data error in the status word.
typedef struct RtAotCheck {
  int node;
  const char *where, *name, *op, *dtype;
  int64_t range;       // gather: the indexed axis; cross_entropy: classes
  bool is_gather;
} RtAotCheck;

typedef struct RtAotModel {
  const char *name;    // the model file it was compiled from
  const char *target;  // CPU name and vector width, for --help
  int n_nodes, n_bufs;
  const RtAotBuf *bufs;
  int n_steps;
  const RtAotStep *steps;
  const int *arg_ids;
  int n_arg_ids;
  int n_inputs, n_outputs, n_params, n_checks;
  const RtAotTensor *inputs, *outputs, *params;  // outputs: declared outputs, then losses
  const RtAotCheck *checks;
  const unsigned char *weights;  // embedded safetensors image of the parameters, or NULL
  size_t weights_size;
} RtAotModel;

// One instance: buffers and the plan over them.
typedef struct RtAot {
  const RtAotModel *m;
  void **buf;
  bool *borrowed;  // per buffer: points into the embedded weights (not owned, read-only)
  void **step_bufs;
  RtStep *steps;
  int threads;
  bool poison;     // fresh buffers are filled with NaN bytes (RtTuning.poison_buffers)
} RtAot;

// Allocates the buffers. Of t (NULL: the defaults), threads and poison_buffers apply;
// the entry point (rt_aot_main) reads them from the environment, the library API does not.
bool rt_aot_create(const RtAotModel *m, const RtTuning *t, RtAot *a, Diag *d);
void rt_aot_free(RtAot *a);
// Binds every parameter that outputs in `wanted` use from f (converted when safe) and runs
// the once-steps. With `borrow` (f is the embedded image, which lives as long as the
// program), a tensor already in the parameter's dtype and aligned for it is used in place.
bool rt_aot_bind_weights(RtAot *a, const StFile *f, uint64_t wanted, bool borrow, Diag *d);
// Binds the inputs present in f that outputs in `wanted` use.
bool rt_aot_bind_inputs(RtAot *a, const StFile *f, uint64_t wanted, Diag *d);
// Checks tensor t against description want and converts it into dst (messages as kiln run).
bool rt_aot_convert(const RtAotTensor *want, const StTensor *t, const char *file, void *dst,
                    Diag *d);
// Runs the steps that feed outputs in `wanted` (whose inputs must be in `given`), then
// turns a kernel's data error into a message naming the node.
bool rt_aot_run(RtAot *a, uint64_t wanted, Diag *d);
int64_t rt_aot_numel(const RtAotTensor *t);
size_t rt_aot_bytes(const RtAotTensor *t);

// The command line of a compiled executable (runtime/aot_main.c).
int rt_aot_main(const RtAotModel *m, int argc, char **argv);

#endif
