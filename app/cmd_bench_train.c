// `kiln bench MODEL --train`: times whole training steps (forward, backward and the
// compiled optimiser update, written over the parameters and state, and the re-packing of
// changed weights) on fixed inputs, through the library's trainer, and prints
// `compile_ms: X` and `median_ms: X` like the inference bench.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/cli.h"
#include "runtime/timing.h"

int cmd_bench_train(const CliOptions *o) {
  if (o->inputs) {
    fprintf(stderr, "kiln: bench --train runs on fixed inputs; --inputs does not apply\n");
    return EXIT_USAGE;
  }
  KilnSet sets[CLI_MAX_SETS];
  KilnOptions ko = cli_kiln_options(o, sets);
  KilnTrainOptions to = cli_train_options(o);
  to.lr = 1e-4;  // for the timing: the values do not matter
  KilnTrainer *t = NULL;
  Diag d = {0};
  StFile wf = {0};
  bool ok = kiln_trainer_open(o->model, &ko, &to, &t, &d);
  KilnModel *m = ok ? kiln_trainer_model(t) : NULL;
  if (ok && o->weights) ok = st_open(o->weights, &wf, &d) && kiln_bind_params(m, &wf, &d);
  else if (ok) ok = kiln_init_params(m, o->seed, &d);
  st_free(&wf);
  if (ok) kiln_default_inputs(m);  // the optimiser's state stays zero
  int iters = o->iters ? o->iters : 10;
  double *times = calloc((size_t)iters, sizeof *times);
  for (int i = -2; ok && i < iters; i++) {  // two warm-up steps, then the timed ones
    double t0 = rt_now_ms();
    KilnStepResult r;
    ok = kiln_trainer_step(t, 0, &r, &d);  // step 0's learning rate every time
    if (i >= 0) times[i] = rt_now_ms() - t0;
  }
  if (ok) {
    double median = rt_sort_median(times, iters);
    KilnStats st = kiln_stats(m);
    printf("model: %s\nmode: train (%s)\nthreads: %d\niters: %d\nkernels: %d\nsteps: %d\n", kiln_model_file(m),
           o->optimizer && !strcmp(o->optimizer, "sgd") ? "sgd" : "adamw", st.threads, iters, st.kernels, st.steps);
    printf("compile_ms: %.1f\nmedian_ms: %.3f\nmin_ms: %.3f\nmax_ms: %.3f\n", st.compile_ms, median, times[0],
           times[iters - 1]);
    printf("compile_lower_ms: %.1f\ncompile_llvm_ms: %.1f\n", st.lower_ms, st.llvm_ms);
    printf("cache_hits: %d\ncache_misses: %d\n", st.cache_hits, st.cache_misses);
    printf("parameters: %lld\n", (long long)kiln_param_values(m));
  }
  RtTrace tr;
  if (ok && o->trace && (ok = cli_trace_begin(o, m, iters, &tr, &d))) {
    KilnStepResult r;
    for (int i = 0; ok && i < iters; i++) ok = kiln_trainer_step(t, 0, &r, &d);
    ok = cli_trace_end(o, m, &tr, &d) && ok;
  }
  if (!ok) cli_error(&d);
  free(times);
  kiln_trainer_free(t);
  return ok ? 0 : EXIT_USER;
}
