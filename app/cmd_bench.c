// `kiln bench`: compile a model once with the JIT and time warm inference runs (api/kiln.h). Prints
// `compile_ms: X` and `median_ms: X` (the lines scripts read), then details.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app/cli.h"
#include "runtime/timing.h"

// `--profile`: iters more runs with each step timed (its kernel and the barrier after it);
// the time per run by op (fused nodes by kind), then the steps that take longest.
static bool print_profile(KilnModel *m, int iters, Diag *d) {
  int ns = kiln_stats(m).steps;
  double *ms = calloc((size_t)ns + 1, sizeof *ms), total = 0;
  int *order = calloc((size_t)ns + 1, sizeof *order);
  if (!ms || !order) {
    free(ms);
    free(order);
    return diag_error(d, "out of memory for the profile");
  }
  bool ok = true;
  for (int i = 0; i < iters && ok; i++) ok = kiln_run_profiled(m, 0, ms, d);
  char labels[64][32];
  double by[64] = {0};
  int count[64] = {0}, n_labels = 0;
  for (int s = 0; s < ns && ok; s++) {
    char buf[32];
    KilnStep st = kiln_step(m, s, buf, sizeof buf);
    if (st.once) continue;
    ms[s] /= iters;
    total += ms[s];
    int k = 0;
    while (k < n_labels && strcmp(labels[k], st.label) != 0) k++;
    if (k == n_labels && n_labels < 64) snprintf(labels[n_labels++], sizeof labels[0], "%s", st.label);
    if (k < 64) {
      by[k] += ms[s];
      count[k]++;
    }
  }
  if (ok) {
    printf("profile: %d runs, each step's kernel and barrier; %.3f ms a run\n", iters, total);
    printf("  %-20s %10s %7s %6s\n", "op", "ms/run", "share", "steps");
  }
  for (int done = 0; ok && done < n_labels; done++) {  // by time, descending
    int best = -1;
    for (int k = 0; k < n_labels; k++)
      if (count[k] >= 0 && (best < 0 || by[k] > by[best])) best = k;
    printf("  %-20s %10.3f %6.1f%% %6d\n", labels[best], by[best], total > 0 ? 100 * by[best] / total : 0,
           count[best]);
    count[best] = -1;
  }
  for (int s = 0; s < ns; s++) order[s] = s;
  for (int i = 1; i < ns; i++)  // insertion sort by time, descending (a few hundred steps)
    for (int j = i; j > 0 && ms[order[j]] > ms[order[j - 1]]; j--) {
      int x = order[j];
      order[j] = order[j - 1];
      order[j - 1] = x;
    }
  if (ok) printf("  %-10s %7s  %s\n", "ms/run", "share", "step: node (kernel)");
  for (int i = 0; ok && i < ns && i < 15; i++) {
    int s = order[i];
    char buf[32];
    KilnStep st = kiln_step(m, s, buf, sizeof buf);
    if (st.once) continue;
    printf("  %-10.3f %6.1f%%  %d: %s (%s)\n", ms[s], total > 0 ? 100 * ms[s] / total : 0, s, st.node, st.kernel);
  }
  free(ms);
  free(order);
  return ok;
}

int cmd_bench(const CliOptions *o) {
  if (o->train) return cmd_bench_train(o);
  KilnSet sets[CLI_MAX_SETS];
  KilnOptions ko = cli_kiln_options(o, sets);
  ko.backend = KILN_BACKEND_JIT;
  KilnModel *m = cli_open(o, &ko);
  if (!m) return EXIT_USER;
  Diag d = {0};
  StFile wf = {0}, inf = {0};
  bool ok = kiln_compile(m, &d);
  if (ok && o->weights) ok = st_open(o->weights, &wf, &d) && kiln_bind_params(m, &wf, &d);
  else if (ok) ok = kiln_init_params(m, o->seed, &d);
  st_free(&wf);  // read tensor by tensor into the parameters' buffers: the file is closed
  kiln_default_inputs(m);
  if (ok && o->inputs) ok = st_read(o->inputs, &inf, &d) && kiln_bind_inputs(m, &inf, &d);
  int iters = o->iters ? o->iters : 20;
  double *t = calloc((size_t)iters, sizeof *t);
  for (int i = 0; ok && i < 3; i++) ok = kiln_run(m, 0, &d);  // warm-up (the first packs the weights)
  for (int i = 0; ok && i < iters; i++) {
    double t0 = rt_now_ms();
    ok = kiln_run(m, 0, &d);
    t[i] = rt_now_ms() - t0;
  }
  if (ok) {
    double median = rt_sort_median(t, iters);
    double gflop = kiln_gflop(m);
    KilnStats st = kiln_stats(m);
    printf("model: %s\nthreads: %d\niters: %d\nkernels: %d\nsteps: %d\n", kiln_model_file(m), st.threads, iters,
           st.kernels, st.steps);
    printf("compile_ms: %.1f\nmedian_ms: %.3f\nmin_ms: %.3f\nmax_ms: %.3f\n", st.compile_ms, median,
           t[0], t[iters - 1]);
    printf("compile_lower_ms: %.1f\ncompile_llvm_ms: %.1f\ncompile_buffers_ms: %.1f\n", st.lower_ms,
           st.llvm_ms, st.compile_ms - st.lower_ms - st.llvm_ms);
    printf("cache_hits: %d\ncache_misses: %d\n", st.cache_hits, st.cache_misses);
    printf("gflop_per_run: %.3f\ngflops: %.1f\n", gflop, gflop / (median / 1e3));
    if (o->profile) ok = print_profile(m, iters, &d);
  }
  RtTrace tr;
  if (ok && o->trace && (ok = cli_trace_begin(o, m, iters, &tr, &d))) {
    for (int i = 0; ok && i < iters; i++) ok = kiln_run(m, 0, &d);
    ok = cli_trace_end(o, m, &tr, &d) && ok;
  }
  if (!ok) cli_error(&d);
  free(t);
  st_free(&inf);
  kiln_model_free(m);
  return ok ? 0 : EXIT_USER;
}
