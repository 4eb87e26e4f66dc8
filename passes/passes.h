// Passes: IR-to-IR transformations run in the order pipeline.c lists them. The verifier
// runs after each one. `kiln dump --after NAME` shows the graph after any of them.
#ifndef KILN_PASSES_H
#define KILN_PASSES_H

#include "ir/ir.h"

// What the pipeline is run for. Passes read what they need from it.
typedef struct PassOptions {
  const char *loss;  // training/grad: the loss autodiff differentiates; NULL: inference only
  bool wrt_inputs;   // autodiff also records gradients of f32 inputs
} PassOptions;

typedef bool (*PassFn)(IrGraph *g, const PassOptions *o, Diag *d);

typedef struct Pass {
  const char *name;
  const char *doc;
  PassFn run;
} Pass;

// The pipeline, in order. "parse" (the graph as the frontend built it) comes first. The
// planned order: parse, fuse_attention (before autodiff: the fused op has its own gradient
// that recomputes instead of storing scores), autodiff, simplify, cse, dce, fuse,
// schedule, memplan. Each pass adds its own line to pipeline.c.
extern const Pass pass_pipeline[];
extern const int pass_count;

// Runs the pipeline up to and including pass `stop` (NULL: all), verifying after each.
// Names in `disabled` (n_disabled of them) are skipped. Unknown names are errors.
bool pass_run_pipeline(IrGraph *g, const PassOptions *o, const char *stop, const char *const *disabled,
                       int n_disabled, Diag *d);

// Reverse-mode autodiff (passes/autodiff.c): appends to g the backward graph of the loss
// named `loss` and records in g->grads d(loss)/d(p) for every parameter p (and every f32
// input if wrt_inputs); zeros where the loss does not depend on it. Fails, naming the node,
// when the loss depends through a float path on an op without a gradient rule.
bool pass_autodiff(IrGraph *g, const char *loss, bool wrt_inputs, Diag *d);

// The optimisation passes, one file each (passes/<name>.c), in pipeline order.
bool pass_simplify(IrGraph *g, const PassOptions *o, Diag *d);
bool pass_cse(IrGraph *g, const PassOptions *o, Diag *d);
bool pass_dce(IrGraph *g, const PassOptions *o, Diag *d);
bool pass_schedule(IrGraph *g, const PassOptions *o, Diag *d);
// The peak of live intermediate bytes when the nodes run in the graph's order (the measure
// pass_schedule lowers): parameters and inputs excluded, reshapes free.
int64_t pass_schedule_peak(const IrGraph *g);
bool pass_memplan(IrGraph *g, const PassOptions *o, Diag *d);

#endif
