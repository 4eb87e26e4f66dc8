// Tests of the plan executor (runtime/plan.c) with plain C kernels: every step sees all of
// the previous step's writes, whichever thread made them (the barrier between steps), also
// with more threads than cores, where waiting threads must give their core back, and a
// long wait costs no CPU time; every item runs once, and a slow thread's share is taken
// over by the others. And the
// settings it runs with (runtime/tuning.c): thread counts, poisoned buffers, the reader of
// RtTuning's variables.
#include <check.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/plan.h"
#include "runtime/tuning.h"
#include "tests/check_run.h"

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

// Every item of a step runs exactly once, whichever thread takes it: counts[i] is item i's
// calls (a thread that finished its own share takes chunks of the others', see plan.c).
static void count_each_item(void **bufs, int64_t begin, int64_t end) {
  _Atomic int64_t *runs = bufs[0];
  for (int64_t i = begin; i < end; i++) runs[i]++;
}

START_TEST(test_plan_runs_every_item_once) {
  static const int64_t cases[][2] = {{9, 2}, {5, 4}, {13, 8}, {3, 2}, {64, 3}, {1000, 2}, {100003, 4}, {0, 2}};
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    int64_t work = cases[c][0], threads = cases[c][1];
    _Atomic int64_t *runs = calloc((size_t)work + 1, sizeof *runs);
    void *bufs[1] = {(void *)runs};
    RtStep steps[3];
    for (int s = 0; s < 3; s++) steps[s] = (RtStep){.fn = count_each_item, .bufs = bufs, .work = work, .name = "count"};
    RtPlan plan = {steps, 3};
    for (int run = 0; run < 2; run++) rt_plan_run(&plan, (int)threads);
    for (int64_t i = 0; i < work; i++)
      ck_assert_msg(runs[i] == 6, "%lld items on %lld threads: item %lld ran %lld times in 3 steps x 2 runs",
                    (long long)work, (long long)threads, (long long)i, (long long)runs[i]);
    free((void *)runs);
  }
}
END_TEST

// bufs: counts (one int64 per thread). Items cost 20 ms on thread 0 and nothing elsewhere:
// the other threads take over most of thread 0's share instead of waiting at the barrier.
static void slow_on_thread_0(void **bufs, int64_t begin, int64_t end) {
  int64_t *count = bufs[0];
  int t = omp_get_thread_num();
  count[t] += end - begin;
  if (t == 0) nanosleep(&(struct timespec){0, (end - begin) * 20 * 1000 * 1000}, NULL);
}

START_TEST(test_a_slow_thread_share_is_taken_over) {
  int64_t count[2] = {0};
  void *bufs[1] = {count};
  RtStep step = {.fn = slow_on_thread_0, .bufs = bufs, .work = 32, .name = "slow"};
  RtPlan plan = {&step, 1};
  double w0 = omp_get_wtime();
  rt_plan_run(&plan, 2);
  double wall = omp_get_wtime() - w0;
  ck_assert_int_eq(count[0] + count[1], 32);
  // A static split gives thread 0 16 items (320 ms); it runs its first chunk while thread 1
  // takes the rest from the back.
  ck_assert_msg(count[0] <= 4, "thread 0 (20 ms an item) ran %lld of 32 items", (long long)count[0]);
  ck_assert_msg(wall < 0.2, "%.3f s (16 items on the slow thread: 0.32 s)", wall);
}
END_TEST

// Item 0 sleeps 300 ms; the thread with item 1 waits at the barrier meanwhile.
static void sleep_first(void **bufs, int64_t begin, int64_t end) {
  (void)bufs;
  if (begin == 0 && end > 0) nanosleep(&(struct timespec){0, 300 * 1000 * 1000}, NULL);
}

static double cpu_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

// A thread waiting long at the barrier sleeps: it costs no CPU time (the sched_yield loop
// it replaced spent the whole wait in system calls on an idle core).
START_TEST(test_a_long_wait_at_the_barrier_takes_no_cpu) {
  RtStep steps[2] = {{.fn = sleep_first, .work = 2, .name = "sleep"}, {.fn = sleep_first, .work = 2, .name = "sleep"}};
  RtPlan plan = {steps, 2};
  double c0 = cpu_s(), w0 = omp_get_wtime();
  rt_plan_run(&plan, 2);
  double cpu = cpu_s() - c0, wall = omp_get_wtime() - w0;
  ck_assert_msg(wall >= 0.59, "wall %.3f s", wall);
  ck_assert_msg(cpu < 0.1, "%.3f s of CPU time while one thread slept %.3f s", cpu, wall);
}
END_TEST

START_TEST(test_default_threads_are_the_request_else_every_core) {
  ck_assert_int_eq(rt_default_threads(3), 3);
  ck_assert_int_eq(rt_default_threads(0), omp_get_num_procs());
}
END_TEST

START_TEST(test_buffers_are_aligned_and_poisoned_only_when_asked) {
  unsigned char *p = rt_alloc_buffer(100, true);  // rounded up to 128 bytes, all NaN bytes
  ck_assert_ptr_nonnull(p);
  ck_assert_uint_eq((uintptr_t)p % 64, 0);
  for (int i = 0; i < 128; i++) ck_assert_uint_eq(p[i], 0xff);
  rt_free_buffer(p, 100);
  p = rt_alloc_buffer(0, false);  // a real (64-byte) buffer even for nothing
  ck_assert_ptr_nonnull(p);
  rt_free_buffer(p, 0);
}
END_TEST

// A trainer's optimiser state starts as the zeros of its fresh buffers, small or mapped on
// their own (from 1 MiB, 2 MiB aligned for huge pages), and poisoned ones are NaN bytes.
START_TEST(test_fresh_buffers_are_zeros_small_and_large) {
  size_t sizes[] = {100, (1 << 20) - 64, 1 << 20, (3 << 20) + 100};
  for (int heap = 0; heap < 2; heap++)  // a small buffer reused from the heap is cleared too
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
      size_t n = sizes[i];
      unsigned char *p = rt_alloc_buffer(n, false);
      ck_assert_ptr_nonnull(p);
      ck_assert_uint_eq((uintptr_t)p % (n >= 1 << 20 ? 2 << 20 : 64), 0);
      for (size_t k = 0; k < n; k += 61) ck_assert_uint_eq(p[k], 0);
      ck_assert_uint_eq(p[n - 1], 0);
      memset(p, 0x5a, n);
      rt_free_buffer(p, n);
      p = rt_alloc_buffer(n, true);
      ck_assert_ptr_nonnull(p);
      ck_assert_uint_eq(p[0], 0xff);
      ck_assert_uint_eq(p[n - 1], 0xff);
      memset(p, 0x5a, n);
      rt_free_buffer(p, n);
    }
}
END_TEST

// A stand-in for the environment: NAME=VALUE pairs.
static const char *const *fake_vars;
static char *fake_lookup(const char *name) {
  for (int i = 0; fake_vars[i]; i++) {
    size_t n = strlen(name);
    if (!strncmp(fake_vars[i], name, n) && fake_vars[i][n] == '=') return (char *)fake_vars[i] + n + 1;
  }
  return NULL;
}

START_TEST(test_tuning_reads_each_variable_from_the_lookup_it_is_given) {
  static const char *const vars[] = {
      "KILN_CPU=haswell", "KILN_CPU_FEATURES=+avx2", "KILN_NUM_THREADS=3", "KILN_GEMM_MR=4",
      "KILN_GEMM_NV=2", "KILN_GEMM_UNROLL=2", "KILN_GEMM_KC=96", "KILN_GEMM_L2=1000",
      "KILN_GEMM_MIN_ITEMS=2", "KILN_GEMM_FUSE=0", "KILN_GEMM_PREFETCH=0",
      "KILN_GEMM_PF_LOCALITY=0", "KILN_GEMM_DEBUG=1", "KILN_ATTN_ROWS=5",
      "KILN_POISON_BUFFERS=1", "KILN_PERF_JIT=1", NULL};
  fake_vars = vars;
  RtTuning t = {0};
  rt_tuning_read(&t, fake_lookup);
  ck_assert_str_eq(t.cpu, "haswell");
  ck_assert_str_eq(t.features, "+avx2");
  ck_assert_int_eq(t.threads, 3);
  ck_assert(t.gemm_mr == 4 && t.gemm_nv == 2 && t.gemm_unroll == 2);
  ck_assert(t.gemm_kc == 96 && t.gemm_l2_floats == 1000 && t.gemm_min_items == 2);
  ck_assert(t.gemm_no_fuse && t.gemm_no_prefetch && t.gemm_debug);
  ck_assert_int_eq(t.gemm_pf_locality, 1);  // locality 0, stored + 1 (0 is the plan's own)
  ck_assert_int_eq(t.attn_rows, 5);
  ck_assert(t.poison_buffers && t.perf_jit);
}
END_TEST

START_TEST(test_tuning_keeps_defaults_for_unset_and_malformed_variables) {
  static const char *const vars[] = {"KILN_CPU=native", "KILN_NUM_THREADS=lots",
                                     "KILN_GEMM_KC=", "KILN_GEMM_FUSE=1", "KILN_PERF_JIT=0",
                                     "KILN_POISON_BUFFERS=0", NULL};
  fake_vars = vars;
  RtTuning t = {0};
  rt_tuning_read(&t, fake_lookup);
  ck_assert_ptr_null(t.cpu);  // "native": the host's, as --cpu native
  ck_assert(t.threads == 0 && t.gemm_kc == 0);
  ck_assert(!t.gemm_no_fuse && !t.perf_jit && !t.poison_buffers);
}
END_TEST

static Suite *plan_suite(void) {
  Suite *s = suite_create("plan");
  TCase *tc = tcase_create("plan");
  tcase_add_loop_test(tc, test_plan_steps_see_every_write_of_the_step_before, 0, 8);  // 1..8 threads
  tcase_add_test(tc, test_plan_runs_every_item_once);
  tcase_add_test(tc, test_a_slow_thread_share_is_taken_over);
  tcase_add_test(tc, test_default_threads_are_the_request_else_every_core);
  tcase_add_test(tc, test_a_long_wait_at_the_barrier_takes_no_cpu);
  tcase_add_test(tc, test_buffers_are_aligned_and_poisoned_only_when_asked);
  tcase_add_test(tc, test_fresh_buffers_are_zeros_small_and_large);
  tcase_add_test(tc, test_tuning_reads_each_variable_from_the_lookup_it_is_given);
  tcase_add_test(tc, test_tuning_keeps_defaults_for_unset_and_malformed_variables);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return check_run(plan_suite()); }
