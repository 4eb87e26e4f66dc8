// Evaluating a model on a data file (kiln eval, and kiln train --eval-data), through the
// public API (api/kiln.h): the model is
// compiled once in inference mode for its batch size (and once more for a last partial
// batch), the data converted once; then any number of weight sets can be bound and scored.
#ifndef KILN_EVALUATE_H
#define KILN_EVALUATE_H

#include <stdio.h>

#include "api/kiln.h"
#include "dist/dist.h"

// Sums over the examples seen; fe_metrics_print turns them into means and rates.
typedef struct FeMetrics {
  int64_t examples;
  double loss_sum;  // sum over batches of loss * batch size
  int64_t n_cls, cls_correct;
  double soft_sum;
  bool soft;        // labels are soft scores (VQA)
  int64_t mlm_n, mlm_correct, si_n, si_correct;
  int64_t phrases, phrase_hits;  // Flickr30K: labelled slots, top region among the labelled
} FeMetrics;

typedef struct FeEvalPart {  // one compilation: examples [first, first + count)
  KilnModel *m;
  const char *loss;
  int64_t first, count, batch;
} FeEvalPart;

typedef struct FeEvaluator {
  FeEvalPart part[2];  // full batches; the remainder (batch = examples % batch)
  int n_parts;
  KilnData *data;      // the examples, bound to either part by input name
  DistComm *comm;      // under mpirun (set by the caller after fe_eval_open): each process
                       // runs every N-th batch and fe_eval_run sums the metrics; NULL: alone
} FeEvaluator;

// Opens the model file at path with ko's settings (backend, loss and training ignored:
// inference on the JIT), reads the data file and compiles. Errors name the file, the tensor
// or the model.
bool fe_eval_open(const char *path, const KilnOptions *ko, const char *loss, const char *data_path,
                  FeEvaluator *e, Diag *d);
// Binds the parameters from a weights file (every parameter must be there).
bool fe_eval_bind_file(FeEvaluator *e, const StFile *w, Diag *d);
// Binds the parameters from another model's, by name; shapes and dtypes must agree
// (kiln train's current weights).
bool fe_eval_bind_model(FeEvaluator *e, KilnModel *src, Diag *d);
// Runs every example once through the bound weights (with e->comm, a collective: every
// process calls it, runs its share of the batches, and gets the sums of all of them).
bool fe_eval_run(FeEvaluator *e, FeMetrics *m, Diag *d);
// "name: value" lines, or " name value" pairs on one line (no newline).
void fe_metrics_print(const FeMetrics *m, FILE *f, bool one_line);
void fe_eval_free(FeEvaluator *e);

#endif
