// The executor: runs a plan — a list of kernel calls over buffers — with OpenMP threads.
// It knows nothing of model files, the IR or LLVM: kernels are plain function pointers.
// Each step's work items [0, work) are split into equal contiguous shares, one per thread;
// a thread that finishes its share early takes chunks from the back of the others' (a slow
// core does not hold the step up); a barrier between steps (spin briefly, then sleep).
// Kernels compute each item alone, so results do not depend on who ran which item.
#ifndef KILN_PLAN_H
#define KILN_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/trace.h"

typedef void (*RtKernel)(void **bufs, int64_t begin, int64_t end);

typedef struct RtStep {
  RtKernel fn;
  void **bufs;
  int64_t work;
  bool once;         // run by rt_plan_prepare (after parameters are bound), not by rt_plan_run
  const char *name;  // for profiles and messages
} RtStep;

typedef struct RtPlan {
  RtStep *steps;
  int n_steps;
} RtPlan;

// Threads to use: `requested` if at least 1 (RtTuning.threads: the entry point's
// KILN_NUM_THREADS), else every core.
int rt_default_threads(int requested);
// A buffer for kernels (JIT and AOT alike): 64-byte aligned, rounded up to 64 bytes, zeros;
// free it with rt_free_buffer (the same bytes). Large buffers are fresh pages of their own
// (zeros without touching them: the first run faults them in, in huge pages where the
// kernel allows); small ones are cleared. Kernels do not rely on the zeros (each writes its
// whole output before anything reads it); a trainer's optimiser state does. With `poison`
// (RtTuning.poison_buffers, set by the tests) it is filled with NaN bytes instead, to hold
// kernels to that.
void *rt_alloc_buffer(size_t bytes, bool poison);
void rt_free_buffer(void *p, size_t bytes);
void rt_plan_prepare(const RtPlan *p, int threads);  // the `once` steps
void rt_plan_run(const RtPlan *p, int threads);      // every other step, in order
// rt_plan_run that also adds each step's wall time (its kernel and the barrier after it,
// in milliseconds) to step_ms[s]: what `kiln bench --profile` reports.
void rt_plan_run_profiled(const RtPlan *p, int threads, double *step_ms);
// rt_plan_run of only the steps s whose mask phase[s] has bit `which`, in order, calling
// after(ctx, s) (if not NULL) on the calling thread once step s has finished on every
// thread (the others go on meanwhile): the distributed trainer starts all-reduces there.
typedef void (*RtStepHook)(void *ctx, int step);
void rt_plan_run_phase(const RtPlan *p, int threads, const unsigned char *phase, int which, RtStepHook after,
                       void *ctx);
// rt_plan_run that records every thread's spans into t (runtime/trace.h), when the run fits
// in every track; otherwise it runs untraced and counts t->runs_dropped.
void rt_plan_run_traced(const RtPlan *p, int threads, RtTrace *t);

#endif
