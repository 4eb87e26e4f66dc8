// `kiln bench`: compile a model once with the JIT and time warm inference runs. Prints
// `compile_ms: X` and `median_ms: X` (the lines scripts read), then details.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codegen/compile.h"
#include "api/bind.h"
#include "app/cli.h"
#include "runtime/timing.h"

// `--profile`: iters more runs with each step timed (its kernel and the barrier after it);
// the time per run by op (fused nodes by kind), then the steps that take longest.
static bool print_profile(const IrGraph *g, const CgProgram *p, int threads, int iters) {
  int ns = p->plan.n_steps;
  double *ms = calloc((size_t)ns + 1, sizeof *ms), total = 0;
  int *order = calloc((size_t)ns + 1, sizeof *order);
  if (!ms || !order) {
    free(ms);
    free(order);
    fprintf(stderr, "kiln: out of memory for the profile\n");
    return false;
  }
  for (int i = 0; i < iters; i++) rt_plan_run_profiled(&p->plan, threads, ms);
  char labels[64][32];
  double by[64] = {0};
  int count[64] = {0}, n_labels = 0;
  for (int s = 0; s < ns; s++) {
    if (p->plan.steps[s].once) continue;
    ms[s] /= iters;
    total += ms[s];
    char buf[32];
    const char *l = ir_op_label(g->nodes[p->step_node[s]], buf, sizeof buf);
    int k = 0;
    while (k < n_labels && strcmp(labels[k], l) != 0) k++;
    if (k == n_labels && n_labels < 64) snprintf(labels[n_labels++], sizeof labels[0], "%s", l);
    if (k < 64) {
      by[k] += ms[s];
      count[k]++;
    }
  }
  printf("profile: %d runs, each step's kernel and barrier; %.3f ms a run\n", iters, total);
  printf("  %-20s %10s %7s %6s\n", "op", "ms/run", "share", "steps");
  for (int done = 0; done < n_labels; done++) {  // by time, descending
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
  printf("  %-10s %7s  %s\n", "ms/run", "share", "step: node (kernel)");
  for (int i = 0; i < ns && i < 15; i++) {
    int s = order[i];
    if (p->plan.steps[s].once) continue;
    printf("  %-10.3f %6.1f%%  %d: %s (%s)\n", ms[s], total > 0 ? 100 * ms[s] / total : 0, s,
           g->nodes[p->step_node[s]]->name, p->steps.v[s].fn);
  }
  free(ms);
  free(order);
  return true;
}

// Inputs when none are given: integers 0 (valid ids and labels), floats 1 (full masks).
static void default_inputs(const IrGraph *g, void *const *value) {
  for (int i = 0; i < g->n_nodes; i++) {
    const IrNode *n = g->nodes[i];
    if (n->op != IR_OP_INPUT || !value[i]) continue;
    size_t count = (size_t)ir_numel(&n->shape);
    for (size_t k = 0; k < count; k++) dt_store(n->dtype, value[i], k, n->dtype == DT_F32 ? 1.0 : 0.0);
  }
}

int cmd_bench(const CliOptions *o) {
  if (o->train) return cmd_bench_train(o);
  IrGraph g;
  if (!cli_load(o, NULL, &g)) return EXIT_USER;
  Diag d = {0};
  bool *want = calloc((size_t)g.n_nodes + 1, sizeof(bool));
  for (int i = 0; i < g.n_outputs; i++) want[g.outputs[i]->id] = true;
  CgOptions copt = {.dump_dir = o->dump_llvm, .no_memplan = cli_pass_disabled(o, "memplan"), .tuning = o->tuning};
  CgProgram p;
  StFile wf = {0}, inf = {0};
  bool ok = cg_compile(&g, want, &copt, &p, &d);
  free(want);
  if (!ok) {
    cli_error(&d);
    ir_graph_free(&g);
    return EXIT_USER;
  }
  FILE *log = o->verbose ? stderr : NULL;
  if (o->weights) ok = st_read(o->weights, &wf, &d) && fe_bind_native(&g, &wf, IR_OP_PARAM, p.value, NULL, log, &d);
  else ok = fe_init_native(&g, o->seed, p.value, &d);
  st_free(&wf);  // bound: running needs one copy of the weights, not two
  default_inputs(&g, p.value);
  if (ok && o->inputs) ok = st_read(o->inputs, &inf, &d) && fe_bind_native(&g, &inf, IR_OP_INPUT, p.value, NULL, log, &d);
  int threads = o->threads ? o->threads : rt_default_threads(o->tuning.threads), iters = o->iters ? o->iters : 20;
  double *t = calloc((size_t)iters, sizeof *t);
  if (ok) {
    rt_plan_prepare(&p.plan, threads);
    for (int i = 0; i < 3; i++) rt_plan_run(&p.plan, threads);  // warm-up
    ok = cg_program_status(&p, &d);
  }
  for (int i = 0; ok && i < iters; i++) {
    double t0 = rt_now_ms();
    rt_plan_run(&p.plan, threads);
    t[i] = rt_now_ms() - t0;
  }
  if (ok) {
    double median = rt_sort_median(t, iters);
    double gflop = ir_count_flops(&g) / 1e9;
    printf("model: %s\nthreads: %d\niters: %d\nkernels: %d\nsteps: %d\n", g.file, threads, iters,
           p.n_kernels, p.plan.n_steps);
    printf("compile_ms: %.1f\nmedian_ms: %.3f\nmin_ms: %.3f\nmax_ms: %.3f\n", p.compile_ms, median,
           t[0], t[iters - 1]);
    printf("compile_lower_ms: %.1f\ncompile_llvm_ms: %.1f\ncompile_buffers_ms: %.1f\n", p.lower_ms,
           p.llvm_ms, p.compile_ms - p.lower_ms - p.llvm_ms);
    printf("gflop_per_run: %.3f\ngflops: %.1f\n", gflop, gflop / (median / 1e3));
    if (o->profile) ok = print_profile(&g, &p, threads, iters);
  } else {
    cli_error(&d);
  }
  free(t);
  st_free(&wf);
  st_free(&inf);
  cg_program_free(&p);
  ir_graph_free(&g);
  return ok ? 0 : EXIT_USER;
}
