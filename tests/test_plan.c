// Tests of the plan executor (runtime/plan.c) with plain C kernels: every step sees all of
// the previous step's writes, whichever thread made them (the barrier between steps), also
// with more threads than cores, where waiting threads must give their core back.
#include <check.h>
#include <stdint.h>
#include <stdlib.h>

#include "runtime/plan.h"

enum { N = 97, STEPS = 600 };

// bufs: src (N), dst (N). dst[i] = src[(i + 1) % N] + 1: item i reads what another
// thread's chunk wrote in the step before.
static void shift_add(void **bufs, int64_t begin, int64_t end) {
  const int64_t *src = bufs[0];
  int64_t *dst = bufs[1];
  for (int64_t i = begin; i < end; i++) dst[i] = src[(i + 1) % N] + 1;
}

static void run_chain(int threads) {
  int64_t *x = calloc(N, sizeof *x), *y = calloc(N, sizeof *y);
  for (int i = 0; i < N; i++) x[i] = i;
  void *fwd[2] = {x, y}, *back[2] = {y, x};
  RtStep *steps = calloc(STEPS, sizeof *steps);
  for (int s = 0; s < STEPS; s++)  // x -> y, y -> x, ... (STEPS even: the result is in x)
    steps[s] = (RtStep){.fn = shift_add, .bufs = s % 2 ? back : fwd, .work = N, .name = "shift"};
  RtPlan plan = {steps, STEPS};
  for (int run = 0; run < 3; run++) {
    rt_plan_run(&plan, threads);
    // After STEPS * (run + 1) steps: x[i] = (i + k) % N + k, k = steps so far.
    int64_t k = (int64_t)STEPS * (run + 1);
    for (int i = 0; i < N; i++)
      ck_assert_msg(x[i] == (i + k) % N + k, "threads %d run %d: x[%d] = %lld, want %lld", threads,
                    run, i, (long long)x[i], (long long)((i + k) % N + k));
  }
  free(steps);
  free(x);
  free(y);
}

START_TEST(test_plan_steps_see_every_write_of_the_step_before) { run_chain(1 + _i); }
END_TEST

static Suite *plan_suite(void) {
  Suite *s = suite_create("plan");
  TCase *tc = tcase_create("plan");
  tcase_add_loop_test(tc, test_plan_steps_see_every_write_of_the_step_before, 0, 8);  // 1..8 threads
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  SRunner *r = srunner_create(plan_suite());
  srunner_run_all(r, CK_NORMAL);
  int failed = srunner_ntests_failed(r);
  srunner_free(r);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
