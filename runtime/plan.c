// The executor (see plan.h): one OpenMP parallel region per run; each thread runs its
// contiguous share of every step's work items (and what is left of the others' once its
// own is done), then waits at a barrier.
#include "runtime/plan.h"

#include <limits.h>
#include <omp.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#ifdef __linux__
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

// ---------------------------------------------------------------------------------------
// The barrier between steps. libgomp's own spins for a long time (~0.3 ms) before it
// sleeps; when other processes share the cores, a thread spinning for a descheduled
// partner holds its core until the scheduler's tick, at every one of ~200 steps a run
// (VisualBERT-base b1, 2 threads, beside a 2-thread training job: ~600 ms a run instead
// of ~75). This one spins briefly — a step's imbalance is usually shorter — then sleeps on
// a futex until the last thread arrives and wakes it. (It used to call sched_yield in a
// loop instead: on an idle core that returns at once, so a long wait was a loop of system
// calls, the 15-30% system time of a training step: 96,000 calls in 12 small steps.)

typedef struct Barrier {
  _Alignas(64) atomic_int arrived;
  _Alignas(64) atomic_int generation;  // the futex word
  atomic_int sleepers;                 // threads in (or on their way into) futex_wait
} Barrier;

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

#ifdef __linux__
static void futex_wait(atomic_int *word, int expected) {
  syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, expected, NULL, NULL, 0);  // returns at once if word != expected
}
static void futex_wake_all(atomic_int *word) { syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0); }
#else
static void futex_wait(atomic_int *word, int expected) {
  (void)word, (void)expected;
  sched_yield();
}
static void futex_wake_all(atomic_int *word) { (void)word; }
#endif

// The kernels' writes before the barrier happen before every thread's reads after it:
// arrivals are acq_rel on `arrived`, the last one releases `generation`, waiters acquire it.
// A sleeper counts itself in `sleepers` before it checks `generation` a last time, and the
// last arrival reads `sleepers` after it bumps `generation` (both sequentially consistent):
// so either the sleeper sees the new generation, or the last arrival sees the sleeper and
// wakes it.
static void barrier_wait(Barrier *b, int nt) {
  int gen = atomic_load_explicit(&b->generation, memory_order_relaxed);
  if (atomic_fetch_add_explicit(&b->arrived, 1, memory_order_acq_rel) == nt - 1) {
    atomic_store_explicit(&b->arrived, 0, memory_order_relaxed);
    atomic_fetch_add(&b->generation, 1);
    if (atomic_load(&b->sleepers)) futex_wake_all(&b->generation);
    return;
  }
  for (int spin = 0; spin < 2048; spin++) {
    if (atomic_load_explicit(&b->generation, memory_order_acquire) != gen) return;
    cpu_relax();
  }
  atomic_fetch_add(&b->sleepers, 1);
  while (atomic_load(&b->generation) == gen) futex_wait(&b->generation, gen);
  atomic_fetch_sub(&b->sleepers, 1);
}

int rt_default_threads(int requested) {
  return requested >= 1 ? requested : omp_get_num_procs();
}

// Buffers from RT_MAP_MIN bytes are mapped on their own: fresh zero pages, 2 MiB aligned and
// marked for transparent huge pages, so that touching them (the first run, or a trainer's
// first step) faults 2 MiB at a time instead of 4 KiB (AdamW's 2 x 0.45 GB of VisualBERT-
// base state took ~1 s of page faults zeroed by hand).
enum { RT_MAP_MIN = 1 << 20, RT_HUGE_PAGE = 2 << 20, RT_PAGE = 4096 };

static size_t map_bytes(size_t bytes) { return (bytes + RT_PAGE - 1) / RT_PAGE * RT_PAGE; }

static void *map_buffer(size_t bytes) {
  size_t len = map_bytes(bytes), span = len + RT_HUGE_PAGE;
  char *raw = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) return NULL;
  char *p = (char *)(((uintptr_t)raw + RT_HUGE_PAGE - 1) / RT_HUGE_PAGE * RT_HUGE_PAGE);
  if (p > raw) munmap(raw, (size_t)(p - raw));  // the unaligned head and the unused tail
  if (raw + span > p + len) munmap(p + len, (size_t)(raw + span - (p + len)));
#ifdef MADV_HUGEPAGE
  madvise(p, len, MADV_HUGEPAGE);  // advice only: without it, 4 KiB pages as before
#endif
  return p;
}

void *rt_alloc_buffer(size_t bytes, bool poison) {
  size_t n = (bytes + 63) / 64 * 64;
  if (!n) n = 64;
  void *p = n >= RT_MAP_MIN ? map_buffer(n) : aligned_alloc(64, n);
  if (p && (poison || n < RT_MAP_MIN)) memset(p, poison ? 0xff : 0, n);
  return p;
}

void rt_free_buffer(void *p, size_t bytes) {
  size_t n = (bytes + 63) / 64 * 64;
  if (!p) return;
  if (n >= RT_MAP_MIN) munmap(p, map_bytes(n));
  else free(p);
}

bool rt_trace_init(RtTrace *t, int threads, int runs, int64_t steps) {
  int64_t cap = runs * steps;
  *t = (RtTrace){.threads = threads, .max_runs = runs, .cap = cap, .origin = omp_get_wtime()};
  t->n = calloc((size_t)threads, sizeof *t->n);
  t->span = malloc((size_t)threads * (size_t)cap * sizeof *t->span);
  if (t->n && t->span) return true;
  rt_trace_free(t);
  return false;
}

void rt_trace_free(RtTrace *t) {
  free(t->n);
  free(t->span);
  *t = (RtTrace){0};
}

// Work sharing within a step. Thread t's home share is [work·t/nt, work·(t+1)/nt) (shares
// differ by one item at most, as the GEMM planner's split_efficiency assumes), cut into at
// most SHARE_CHUNKS chunks. The owner takes its chunks from the front; a thread that has
// finished its own share takes the others' from the back. So on cores of equal speed each
// thread runs its home share in order, as with a static split, and when one core runs
// slower (a VM's vCPUs differ: on the 2-vCPU Zen 5 one ran the bf16 GEMMs 8-14% slower,
// whichever thread was bound to it, and the other waited 10% of a VQA run at the barriers)
// the faster thread takes over the tail of its share. Items are independent (every kernel's
// result is the same however [0, work) is cut), so who runs a chunk changes no result.
enum { SHARE_CHUNKS = 16 };

typedef struct Share {
  _Alignas(64) _Atomic uint64_t taken;  // chunks taken: from the front (low 32 bits), the back (high)
} Share;

// Claims the next chunk of a share of n chunks, from the front or the back; false when none is left.
static bool take_chunk(Share *sh, int64_t n, bool back, int64_t *chunk) {
  uint64_t w = atomic_load_explicit(&sh->taken, memory_order_relaxed);
  for (;;) {
    int64_t front = (int64_t)(w & 0xffffffffu), behind = (int64_t)(w >> 32);
    if (front + behind >= n) return false;
    uint64_t next = back ? w + (1ull << 32) : w + 1;
    if (atomic_compare_exchange_weak_explicit(&sh->taken, &w, next, memory_order_relaxed,
                                              memory_order_relaxed)) {
      *chunk = back ? n - 1 - behind : front;
      return true;
    }
  }
}

// Runs thread t's part of step st: its own share from the front, then the other shares'
// remaining chunks from the back. shares: one per thread, all zero before the step.
static void run_shared(const RtStep *st, int64_t t, int64_t nt, Share *shares) {
  for (int64_t v = 0; v < nt; v++) {
    int64_t u = (t + v) % nt, b = st->work * u / nt, e = st->work * (u + 1) / nt;
    int64_t size = (e - b + SHARE_CHUNKS - 1) / SHARE_CHUNKS, n = size ? (e - b + size - 1) / size : 0, c;
    while (take_chunk(&shares[u], n, v > 0, &c)) {
      int64_t cb = b + c * size, ce = cb + size < e ? cb + size : e;
      st->fn(st->bufs, cb, ce);
    }
  }
}

// step_ms (profiles): thread 0 adds each step's time, barrier to barrier, to step_ms[s].
// phase (NULL: every step): only the steps whose mask has bit `which`, each followed on
// thread 0 by after.
// trace: each thread records its spans of the run in its track (the caller checked they fit).
typedef struct Phase {
  const unsigned char *of;
  int which;
  RtStepHook after;
  void *ctx;
} Phase;

static void run_steps(const RtPlan *p, int threads, bool once, double *step_ms, const Phase *ph,
                      RtTrace *trace) {
  if (threads < 1) threads = 1;
  Barrier barrier = {0};
  // Two sets of shares, used by alternate steps: a thread clears its share of the next
  // step's set before the barrier that ends this step, when no one uses that set.
  Share *shares = threads > 1 ? aligned_alloc(64, 2 * (size_t)threads * sizeof *shares) : NULL;
  if (threads > 1 && !shares) threads = 1;  // out of memory: one thread, no sharing needed
  for (int k = 0; shares && k < 2 * threads; k++) atomic_init(&shares[k].taken, 0);
#pragma omp parallel num_threads(threads)
  {
    int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
    double last = step_ms && t == 0 ? omp_get_wtime() : 0;
    RtTraceSpan *track = trace ? trace->span + t * trace->cap + trace->n[t] : NULL;
    int64_t done = 0;  // steps run so far: the parity of the set of shares
    for (int s = 0; s < p->n_steps; s++) {
      const RtStep *st = &p->steps[s];
      if (st->once != once || (ph && !(ph->of[s] >> ph->which & 1))) continue;
      double begin = trace ? omp_get_wtime() : 0;
      if (nt == 1) {
        if (st->work > 0) st->fn(st->bufs, 0, st->work);
      } else {
        run_shared(st, t, nt, shares + (done & 1) * nt);
        atomic_store_explicit(&shares[((done + 1) & 1) * nt + t].taken, 0, memory_order_relaxed);
      }
      done++;
      double end = trace ? omp_get_wtime() : 0;
      if (nt > 1) barrier_wait(&barrier, (int)nt);
      if (ph && ph->after && t == 0) ph->after(ph->ctx, s);
      if (trace) {
        double left = omp_get_wtime() - trace->origin;
        *track++ = (RtTraceSpan){s, trace->runs, begin - trace->origin, end - trace->origin, left};
      }
      if (step_ms && t == 0) {
        double now = omp_get_wtime();
        step_ms[s] += (now - last) * 1e3;
        last = now;
      }
    }
    if (trace) trace->n[t] = track - (trace->span + t * trace->cap);
  }
  free(shares);
}

void rt_plan_prepare(const RtPlan *p, int threads) { run_steps(p, threads, true, NULL, NULL, NULL); }
void rt_plan_run(const RtPlan *p, int threads) { run_steps(p, threads, false, NULL, NULL, NULL); }
void rt_plan_run_profiled(const RtPlan *p, int threads, double *step_ms) {
  run_steps(p, threads, false, step_ms, NULL, NULL);
}
void rt_plan_run_phase(const RtPlan *p, int threads, const unsigned char *phase, int which, RtStepHook after,
                       void *ctx) {
  run_steps(p, threads, false, NULL, &(Phase){phase, which, after, ctx}, NULL);
}

void rt_plan_run_traced(const RtPlan *p, int threads, RtTrace *t) {
  if (threads < 1) threads = 1;
  int64_t steps = 0;
  for (int s = 0; s < p->n_steps; s++) steps += !p->steps[s].once;
  bool fits = threads <= t->threads && t->runs < t->max_runs;
  for (int k = 0; k < threads && fits; k++) fits = t->n[k] + steps <= t->cap;
  if (!fits) {
    t->runs_dropped++;
    run_steps(p, threads, false, NULL, NULL, NULL);
    return;
  }
  run_steps(p, threads, false, NULL, NULL, t);
  t->runs++;
}
