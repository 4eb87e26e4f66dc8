// Binding tensor files to a graph: weights to parameters and inputs to inputs (checked by
// name, shape and dtype, converted when safe), initial weights from initialisers, and
// outputs written back by name.
#ifndef KILN_BIND_H
#define KILN_BIND_H

#include <stdio.h>

#include "ir/ir.h"
#include "runtime/safetensors.h"

// Every parameter must be in w with its exact shape. Extra tensors are allowed and listed
// on `log` when it is not NULL.
bool fe_bind_weights(const IrGraph *g, const StFile *w, IrValues *vals, FILE *log, Diag *d);

// Inputs present in `in` are bound (shape must match); given[i] is set for each bound node.
// Tensors in the file that name no input are listed on `log` when it is not NULL.
bool fe_bind_inputs(const IrGraph *g, const StFile *in, IrValues *vals, bool *given, FILE *log,
                    Diag *d);

// The JIT's form: converts tensors of f for nodes of `kind` (IR_OP_PARAM: all must be
// there; IR_OP_INPUT: those present) into value[node id] in the node's dtype, for every
// node whose value is not NULL. given[i] is set for each bound node (given may be NULL).
bool fe_bind_native(const IrGraph *g, const StFile *f, IrOpKind kind, void *const *value,
                    bool *given, FILE *log, Diag *d);

// Starting from other weights (kiln train --init): every parameter that f holds is
// converted into value[id] (its shape must match: else an error naming the tensor); the
// others (e.g. a task's head) get their initialisers' values for `seed`, except that an
// initialiser copy(P) copies f's P when f has it (VisualBERT's visual embeddings start from
// a text-only model's tables). On `log`: one line with the counts and the first names of
// those copies and of the initialised ones, one with the tensors of f that are not
// parameters (ignored), if any.
bool fe_bind_partial(const IrGraph *g, const StFile *f, void *const *value, uint64_t seed, FILE *log,
                     Diag *d);

// Data files for kiln train and kiln eval: one tensor per model input with a leading
// example dimension. FeExamples holds one input's examples in the node's dtype,
// (N, ...the input's shape without its batch dim...).
typedef struct FeExamples {
  const IrNode *node;
  char *rows;
  size_t row_bytes;  // one example
} FeExamples;

// Converts, for every input the program reads (value[id] != NULL) other than those placed at
// `skip_where` (NULL: none), the data file's tensor of that name. Each input's leading
// dimension must be *batch (< 0: set from the first input), the tensor's trailing shape the
// input's, and every tensor must
// hold the same number of examples (*n_examples). out has room for g->n_nodes entries; on
// failure the *n_out converted so far are still to be freed (fe_examples_free). Errors name
// the file and the tensor.
bool fe_load_examples(const IrGraph *g, const StFile *f, void *const *value, int64_t *batch, const char *skip_where,
                      FeExamples *out, int *n_out, int64_t *n_examples, Diag *d);
void fe_examples_free(FeExamples *ex, int n);

// Marks in `avail` every node computable from the given inputs (and parameters).
void fe_available(const IrGraph *g, const bool *given, bool *avail);

// Writes the named nodes' values in their dtypes, f32 ones as `floats`: DT_F32, or DT_BF16
// (each f32 value rounded to the nearest bf16, ties to even: dt_round_bf16).
bool fe_write_values(const char *path, const IrNode *const *nodes, const char *const *names,
                     int n, const IrValues *vals, DType floats, Diag *d);

// Writes the named nodes' native buffers (value[node id]), f32 ones as `floats` (as above).
bool fe_write_native(const char *path, const IrNode *const *nodes, const char *const *names,
                     int n, void *const *value, DType floats, Diag *d);

// Initial parameter values from their initialisers, deterministic for a seed: normal(std)
// from a counter-based stream keyed by (seed, parameter name); copies after the rest.
// Fails (out of memory) only for parameters too large to hold.
bool fe_init_params(const IrGraph *g, uint64_t seed, IrValues *vals, Diag *d);
// One parameter's initial values (count = its numel) into out.
void fe_init_param(const IrGraph *g, const IrNode *n, uint64_t seed, double *out);
// The JIT's form: initial values in each parameter's dtype into value[id] (non-NULL ones).
bool fe_init_native(const IrGraph *g, uint64_t seed, void *const *value, Diag *d);

#endif
