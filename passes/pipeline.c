// The pass pipeline: the one list of passes in the order they run (planned order in
// passes.h). "parse" is the graph exactly as the frontend built and verified it; "autodiff"
// appends the backward graph when the pipeline runs for a loss.
#include <string.h>

#include "passes/passes.h"

static bool run_autodiff(IrGraph *g, const PassOptions *o, Diag *d) {
  return !o->loss || pass_autodiff(g, o->loss, o->wrt_inputs, d);
}

static bool run_optimizer(IrGraph *g, const PassOptions *o, Diag *d) {
  return !o->optimizer || pass_optimizer(g, o->optimizer, d);
}

const Pass pass_pipeline[] = {
  {"parse", "the graph as read from the model file (verified, no changes)", NULL},
  {"fuse_attention", "head split, Q.K^T, scale, mask, softmax, dropout, .V, merge -> one "
   "attention node (no [batch, heads, n, n] tensor)", pass_fuse_attention},
  {"autodiff", "with a loss (grad, train, --grad): the backward graph and parameter gradients",
   run_autodiff},
  {"optimizer", "train only: the AdamW/SGD update of every parameter after the backward graph",
   run_optimizer},
  {"simplify", "algebraic identities, reshape/permute folding, constant folding, inert dropout",
   pass_simplify},
  {"cse", "common-subexpression elimination: equal op, inputs and attributes -> one node",
   pass_cse},
  {"dce", "dead-code elimination: drops nodes no output, loss or gradient reaches", pass_dce},
  {"precision", "--precision bf16: matmuls take bf16 operands (rounded when packed), f32 sums",
   pass_precision},
  {"fuse", "fusion: GEMM epilogues, reductions with their elementwise prologue, elementwise loops",
   pass_fuse},
  {"schedule", "orders the nodes to keep the peak of live intermediate bytes low", pass_schedule},
  {"memplan", "codegen places intermediates in one arena by lifetime (off: a buffer each)",
   pass_memplan},
};
const int pass_count = (int)(sizeof pass_pipeline / sizeof pass_pipeline[0]);

static int find_pass(const char *name) {
  for (int i = 0; i < pass_count; i++)
    if (strcmp(pass_pipeline[i].name, name) == 0) return i;
  return -1;
}

static bool unknown(const char *name, Diag *d) {
  char list[512] = "";
  for (int i = 0; i < pass_count; i++)
    snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "",
             pass_pipeline[i].name);
  return diag_error(d, "unknown pass \"%s\" (passes: %s)", name, list);
}

bool pass_run_pipeline(IrGraph *g, const PassOptions *o, const char *stop, const char *const *disabled,
                       int n_disabled, Diag *d) {
  int last = pass_count - 1;
  if (stop && (last = find_pass(stop)) < 0) return unknown(stop, d);
  for (int k = 0; k < n_disabled; k++) {
    if (find_pass(disabled[k]) < 0) return unknown(disabled[k], d);
    if (strcmp(disabled[k], "parse") == 0 || strcmp(disabled[k], "autodiff") == 0 ||
        strcmp(disabled[k], "optimizer") == 0)
      return diag_error(d, "pass %s cannot be disabled (it is not an optimisation)", disabled[k]);
  }
  for (int i = 0; i <= last; i++) {
    bool skip = !pass_pipeline[i].run;
    for (int k = 0; k < n_disabled && !skip; k++) skip = strcmp(disabled[k], pass_pipeline[i].name) == 0;
    if (skip) continue;
    if (!pass_pipeline[i].run(g, o, d)) return diag_prefix(d, "pass %s: ", pass_pipeline[i].name);
    if (!ir_verify(g, d)) return diag_prefix(d, "after pass %s (compiler bug): ", pass_pipeline[i].name);
  }
  return true;
}
