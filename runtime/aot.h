// Ahead-of-time models: `kiln compile` writes a program's RtProgram (runtime/program.h:
// kernel symbols, steps, buffers in the planned arena, tensor descriptions, embedded
// weights) as C data; the runner executes it with no LLVM and no model file: binding
// tensors by name with the same checks and messages as `kiln run`, the steps a run needs.
// runtime/aot_main.c is the command line of compiled executables; runtime/aot_api.c the C
// API of compiled libraries (docs/aot.md).
#ifndef KILN_AOT_H
#define KILN_AOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/diag.h"
#include "runtime/plan.h"
#include "runtime/program.h"
#include "runtime/safetensors.h"
#include "runtime/tuning.h"

// One instance of a compiled program (runtime/program.h) and its thread count.
typedef struct RtAot {
  const RtProgram *m;
  RtInstance in;
  int threads;
  bool prepared;  // the once-steps have run since the weights were bound
} RtAot;

// Allocates the arena and buffers (rt_instance_create), unless they need more than
// max_memory bytes (0: the machine's physical memory). Of t (NULL: the defaults), threads
// and poison_buffers apply; the entry point (rt_aot_main) reads them from the environment, the library API does not.
bool rt_aot_create(const RtProgram *m, const RtTuning *t, uint64_t max_memory, RtAot *a, Diag *d);
void rt_aot_free(RtAot *a);
// Binds every parameter that outputs in `wanted` use from f (converted when safe); the
// next rt_aot_run runs the once-steps first. With `borrow` (f is the embedded image, which lives as long as the
// program), a tensor already in the parameter's dtype and aligned for it is used in place.
bool rt_aot_bind_weights(RtAot *a, const StFile *f, uint64_t wanted, bool borrow, Diag *d);
// Binds the inputs present in f that outputs in `wanted` use.
bool rt_aot_bind_inputs(RtAot *a, const StFile *f, uint64_t wanted, Diag *d);
// Runs the once-steps if the weights changed, then the steps that feed outputs in
// `wanted` (whose inputs must be bound), then
// turns a kernel's data error into a message naming the node (rt_program_status).
bool rt_aot_run(RtAot *a, uint64_t wanted, Diag *d);

// The command line of a compiled executable (runtime/aot_main.c).
int rt_aot_main(const RtProgram *m, int argc, char **argv);

#endif
