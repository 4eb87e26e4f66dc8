// The pass pipeline: the one list of passes in the order they run (planned order in
// passes.h), whether each works on the graph or on codegen's program, and whether it may be
// disabled. "parse" is the graph exactly as the frontend built and verified it; "autodiff"
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
  {"parse", "the graph as read from the model file (verified, no changes)", NULL, PASS_GRAPH, true},
  {"fuse_attention", "head split, Q.K^T, scale, mask, softmax, dropout, .V, merge -> one "
   "attention node (no [batch, heads, n, n] tensor)", pass_fuse_attention, PASS_GRAPH, false},
  {"loss_denominator", "train on several processes or micro-batches: cross_entropy divides by the "
   "step's global label count, a run-time input", pass_loss_denominator, PASS_GRAPH, true},
  {"autodiff", "with a loss (grad, train, --grad): the backward graph and parameter gradients",
   run_autodiff, PASS_GRAPH, true},
  {"optimizer", "train only: the AdamW/SGD update of every parameter after the backward graph",
   run_optimizer, PASS_GRAPH, true},
  {"simplify", "algebraic identities, reshape/permute folding, constant folding, inert dropout",
   pass_simplify, PASS_GRAPH, false},
  {"cse", "common-subexpression elimination: equal op, inputs and attributes -> one node",
   pass_cse, PASS_GRAPH, false},
  {"dce", "dead-code elimination: drops nodes no output, loss or gradient reaches", pass_dce,
   PASS_GRAPH, false},
  {"rowprune", "inference: row-wise ops (linear, add, GELU, LayerNorm, attention queries) "
   "compute only the rows that slices and gathers read (the last layer's pooled rows)",
   pass_rowprune, PASS_GRAPH, false},
  {"precision", "--precision bf16|int8: matmuls take bf16 operands (f32 sums) or, for linear "
   "layers, int8 (int32 sums), converted when packed",
   pass_precision, PASS_GRAPH, true},
  {"fuse", "fusion: GEMM epilogues, reductions with their elementwise prologue, elementwise loops",
   pass_fuse, PASS_GRAPH, false},
  {"schedule", "orders the nodes to keep the peak of live intermediate bytes low", pass_schedule,
   PASS_GRAPH, false},
  {"recompute", "--recompute layers (train, grad): the backward recomputes each encoder layer from its "
   "input instead of keeping its values (activation checkpointing)", pass_recompute, PASS_GRAPH, false},
  {"memplan", "program: places the kernel steps' intermediates in one arena by lifetime "
   "(codegen/memory.c with passes/memplan.c; off: a buffer each)", NULL, PASS_PROGRAM, false},
};
const int pass_count = (int)(sizeof pass_pipeline / sizeof pass_pipeline[0]);

static int find_pass(const char *name) {
  for (int i = 0; i < pass_count; i++)
    if (strcmp(pass_pipeline[i].name, name) == 0) return i;
  return -1;
}

const Pass *pass_find(const char *name) {
  int i = find_pass(name);
  return i < 0 ? NULL : &pass_pipeline[i];
}

static bool unknown(const char *name, Diag *d) {
  char list[512] = "";
  for (int i = 0; i < pass_count; i++)
    snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "",
             pass_pipeline[i].name);
  return diag_error(d, "unknown pass \"%s\" (passes: %s)", name, list);
}

bool pass_disabled(const char *const *disabled, int n_disabled, const char *name) {
  for (int k = 0; k < n_disabled; k++)
    if (strcmp(disabled[k], name) == 0) return true;
  return false;
}

bool pass_run_pipeline(IrGraph *g, const PassOptions *o, const char *stop, const char *const *disabled,
                       int n_disabled, Diag *d) {
  int last = pass_count - 1;
  if (stop && (last = find_pass(stop)) < 0) return unknown(stop, d);
  for (int k = 0; k < n_disabled; k++) {
    if (find_pass(disabled[k]) < 0) return unknown(disabled[k], d);
    if (pass_pipeline[find_pass(disabled[k])].required)
      return diag_error(d, "pass %s cannot be disabled (it is not an optimisation)", disabled[k]);
  }
  for (int i = 0; i <= last; i++) {
    if (!pass_pipeline[i].run || pass_disabled(disabled, n_disabled, pass_pipeline[i].name)) continue;
    if (!pass_pipeline[i].run(g, o, d)) return diag_prefix(d, "pass %s: ", pass_pipeline[i].name);
    if (!ir_verify(g, d)) return diag_prefix(d, "after pass %s (compiler bug): ", pass_pipeline[i].name);
  }
  return true;
}
