// Shared by `kiln train` and `kiln bench --train` (app/cmd_train.c): loading a model
// with the pass pipeline run for training, the optimiser update included.
#ifndef KILN_TRAIN_H
#define KILN_TRAIN_H

#include "app/cli.h"
#include "passes/passes.h"

// The optimiser's settings for `kind` ("adamw" or "sgd"; NULL: adamw): betas 0.9/0.999,
// eps 1e-6, weight decay 0.01, momentum 0.9, clipping at a global norm of 1.
PassOptimizer train_optimizer_spec(const char *kind);

// Loads o->model and runs the pipeline for its loss (o->loss, default "loss"), with the
// optimizer pass when `spec` is set. *n_outputs: the model's own outputs (the update's
// follow them in g->outputs).
bool train_load(const CliOptions *o, const PassOptimizer *spec, IrGraph *g, int *n_outputs, Diag *d);

#endif
