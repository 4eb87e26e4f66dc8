// The C optimiser, the oracle tests/train.sh holds kiln train's compiled update to: the
// first version's AdamW (decoupled weight decay) and SGD with momentum in C with double
// intermediates, global gradient-norm clipping at 1, the same schedule (10% linear warm-up,
// linear decay). It trains through the public API (api/kiln.h: a KilnTrainer with
// external_update, so the program computes only the loss and gradients) and writes
// checkpoints named and laid out as kiln train's, so the two can be compared tensor by
// tensor. Usage (the arguments of kiln train that the tests use):
//   train_oracle MODEL --weights W --data D -o OUT [--steps N] [--lr X] [--optimizer adamw|sgd]
//                [--seed S] [--threads T] [--checkpoint-every N] [--set NAME=VALUE]...
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/kiln.h"

// One update with the gradients of step `step` (0-based).
static void update(KilnTrainer *t, bool sgd, int64_t step) {
  const double beta1 = 0.9, beta2 = 0.999, eps = 1e-6, weight_decay = 0.01, momentum = 0.9, clip = 1.0;
  int n = kiln_trainer_n_params(t);
  double sq = 0;
  for (int k = 0; k < n; k++) {
    KilnParamView p = kiln_trainer_param(t, k);
    for (int64_t i = 0; i < p.numel; i++) sq += (double)p.grad[i] * p.grad[i];
  }
  double norm = sqrt(sq);
  double scale = norm > clip ? clip / (norm + 1e-6) : 1.0;
  double lr = kiln_trainer_lr(t, step), s = (double)(step + 1);
  double c1 = 1.0 - pow(beta1, s), c2 = 1.0 - pow(beta2, s);
  for (int k = 0; k < n; k++) {
    KilnParamView p = kiln_trainer_param(t, k);
    for (int64_t i = 0; p.reached && i < p.numel; i++) {
      float g = (float)(p.grad[i] * scale);
      if (sgd) {
        p.m[i] = (float)(momentum * p.m[i] + g);
        p.value[i] = (float)(p.value[i] - lr * p.m[i]);
        continue;
      }
      p.m[i] = (float)(beta1 * p.m[i] + (1 - beta1) * g);
      p.v[i] = (float)(beta2 * p.v[i] + (1 - beta2) * (double)g * g);
      double w = p.value[i];
      if (p.decay) w -= lr * weight_decay * w;  // decoupled (AdamW), as torch applies it
      w -= lr * (p.m[i] / c1) / (sqrt(p.v[i] / c2) + eps);
      p.value[i] = (float)w;
    }
  }
}

static int fail(const Diag *d) {
  fprintf(stderr, "train_oracle: %s\n", d->msg);
  return 1;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: train_oracle MODEL --weights W --data D -o OUT [...]\n");
    return 2;
  }
  const char *model = argv[1], *weights = NULL, *data = NULL, *out = NULL;
  KilnSet sets[64];
  KilnOptions ko = {.backend = KILN_BACKEND_JIT, .sets = sets};
  KilnTrainOptions to = {.steps = 100, .external_update = true};
  int every = 0;
  for (int i = 2; i + 1 < argc; i += 2) {
    const char *a = argv[i], *v = argv[i + 1];
    if (!strcmp(a, "--weights")) weights = v;
    else if (!strcmp(a, "--data")) data = v;
    else if (!strcmp(a, "-o")) out = v;
    else if (!strcmp(a, "--steps")) to.steps = atoll(v);
    else if (!strcmp(a, "--lr")) to.lr = atof(v);
    else if (!strcmp(a, "--optimizer")) to.optimizer = v;
    else if (!strcmp(a, "--seed")) to.seed = strtoull(v, NULL, 10);
    else if (!strcmp(a, "--threads")) ko.threads = atoi(v);
    else if (!strcmp(a, "--checkpoint-every")) every = atoi(v);
    else if (!strcmp(a, "--set") && strchr(v, '=') && ko.n_sets < 64) {
      char *eq = strchr(v, '=');
      *eq = '\0';
      sets[ko.n_sets++] = (KilnSet){v, eq + 1};
    } else {
      fprintf(stderr, "train_oracle: unknown argument %s\n", a);
      return 2;
    }
  }
  if (!weights || !data || !out) {
    fprintf(stderr, "train_oracle: needs --weights, --data and -o\n");
    return 2;
  }
  bool sgd = to.optimizer && !strcmp(to.optimizer, "sgd");
  Diag d = {0};
  KilnTrainer *t = NULL;
  StFile wf = {0}, df = {0};
  bool ok = kiln_trainer_open(model, &ko, &to, &t, &d) && st_read(weights, &wf, &d) &&
            kiln_bind_params(kiln_trainer_model(t), &wf, &d) && st_read(data, &df, &d) &&
            kiln_trainer_data(t, &df, &d);
  for (int64_t step = 0; ok && step < to.steps; step++) {
    KilnStepResult r;
    ok = kiln_trainer_step(t, step, &r, &d);
    if (ok) update(t, sgd, step);
    if (ok && every && ((step + 1) % every == 0 || step + 1 == to.steps)) {
      char path[4096];  // as kiln train
      kiln_checkpoint_path(out, step + 1, path, sizeof path);
      ok = kiln_trainer_save(t, path, step + 1, true, &d);
    }
  }
  ok = ok && kiln_trainer_save(t, out, to.steps, false, &d);
  st_free(&wf);
  st_free(&df);
  kiln_trainer_free(t);
  return ok ? 0 : fail(&d);
}
