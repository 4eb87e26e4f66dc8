// The executor (see plan.h): one OpenMP parallel region per run; each thread takes its
// contiguous share of every step's work items, then waits at a barrier.
#include "runtime/plan.h"

#include <omp.h>
#include <stdlib.h>

int rt_default_threads(void) {
  const char *s = getenv("KILN_NUM_THREADS");
  if (s && *s) {
    char *end;
    long v = strtol(s, &end, 10);
    if (!*end && v >= 1 && v <= 1024) return (int)v;
  }
  return omp_get_num_procs();
}

// step_ms (profiles): thread 0 adds each step's time, barrier to barrier, to step_ms[s].
static void run_steps(const RtPlan *p, int threads, bool once, double *step_ms) {
  if (threads < 1) threads = 1;
#pragma omp parallel num_threads(threads)
  {
    int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
    double last = step_ms && t == 0 ? omp_get_wtime() : 0;
    for (int s = 0; s < p->n_steps; s++) {
      const RtStep *st = &p->steps[s];
      if (st->once != once) continue;
      int64_t chunk = (st->work + nt - 1) / nt;
      int64_t b = t * chunk, e = b + chunk < st->work ? b + chunk : st->work;
      if (b < e) st->fn(st->bufs, b, e);
#pragma omp barrier
      if (step_ms && t == 0) {
        double now = omp_get_wtime();
        step_ms[s] += (now - last) * 1e3;
        last = now;
      }
    }
  }
}

void rt_plan_prepare(const RtPlan *p, int threads) { run_steps(p, threads, true, NULL); }
void rt_plan_run(const RtPlan *p, int threads) { run_steps(p, threads, false, NULL); }
void rt_plan_run_profiled(const RtPlan *p, int threads, double *step_ms) {
  run_steps(p, threads, false, step_ms);
}
