// Passes: IR-to-IR transformations run in the order pipeline.c lists them. The verifier
// runs after each one. `kiln dump --after NAME` shows the graph after any of them.
#ifndef KILN_PASSES_H
#define KILN_PASSES_H

#include "ir/ir.h"

typedef bool (*PassFn)(IrGraph *g, Diag *d);

typedef struct Pass {
  const char *name;
  const char *doc;
  PassFn run;
} Pass;

// The pipeline, in order. "parse" (the graph as the frontend built it) comes first.
extern const Pass pass_pipeline[];
extern const int pass_count;

// Runs the pipeline up to and including pass `stop` (NULL: all), verifying after each.
// Names in `disabled` (n_disabled of them) are skipped. Unknown names are errors.
bool pass_run_pipeline(IrGraph *g, const char *stop, const char *const *disabled,
                       int n_disabled, Diag *d);

#endif
