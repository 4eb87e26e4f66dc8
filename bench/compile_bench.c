// compile_bench: how long kiln takes to compile a model's program, and where the time goes,
// without running it: wall and CPU time (user+sys of every thread) of kiln_compile for the
// inference program, or of kiln_trainer_open for the pre-training step program (--train).
// usage: build/bench/compile_bench MODEL [--train] [--set NAME=VALUE]... [--threads N] [--dump-llvm DIR]
//        [--cache-dir DIR]
// (--threads: the threads that compile, RtTuning.threads; default every core; --cache-dir:
// the compile cache, none by default: run twice for a cold and a warm compile)
// Prints kernels, steps, compile_ms (wall) and its split (lower, llvm, buffers), cpu_ms,
// and the cache's hits and misses.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/kiln.h"
#include "runtime/timing.h"

static double cpu_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: compile_bench MODEL [--train] [--set NAME=VALUE]... [--threads N] [--dump-llvm DIR] "
            "[--cache-dir DIR]\n");
    return 2;
  }
  KilnSet sets[64];
  int n_sets = 0;
  bool train = false;
  const char *dump = NULL, *cache = NULL;
  int threads = 0;  // compile threads (RtTuning.threads): 0, every core
  for (int i = 2; i < argc; i++) {
    char *eq = i + 1 < argc && !strcmp(argv[i], "--set") ? strchr(argv[i + 1], '=') : NULL;
    if (!strcmp(argv[i], "--train")) {
      train = true;
    } else if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
      threads = atoi(argv[++i]);
    } else if (!strcmp(argv[i], "--cache-dir") && i + 1 < argc) {
      cache = argv[++i];
    } else if (!strcmp(argv[i], "--dump-llvm") && i + 1 < argc) {
      dump = argv[++i];
    } else if (eq && n_sets < 64) {
      *eq = '\0';
      sets[n_sets++] = (KilnSet){argv[i + 1], eq + 1};
      i++;
    } else {
      fprintf(stderr, "compile_bench: unexpected argument %s\n", argv[i]);
      return 2;
    }
  }
  KilnOptions ko = {.sets = sets, .n_sets = n_sets, .dump_llvm = dump, .tuning = {.threads = threads},
                  .cache_dir = cache};
  Diag d = {0};
  KilnModel *m = NULL;
  KilnTrainer *t = NULL;
  double c0 = cpu_ms(), w0 = rt_now_ms();
  bool ok;
  if (train) {
    KilnTrainOptions to = {0};
    ok = kiln_trainer_open(argv[1], &ko, &to, &t, &d);
    if (ok) m = kiln_trainer_model(t);
  } else {
    ok = kiln_model_open(argv[1], &ko, &m, &d);
    double c1 = cpu_ms(), w1 = rt_now_ms();  // the compile alone, without loading and passes
    c0 = c1, w0 = w1;
    ok = ok && kiln_compile(m, &d);
  }
  double cpu = cpu_ms() - c0, wall = rt_now_ms() - w0;
  if (!ok) {
    fprintf(stderr, "compile_bench: %s\n", d.msg);
    kiln_trainer_free(t);
    if (!t) kiln_model_free(m);
    return 1;
  }
  KilnStats st = kiln_stats(m);
  printf("kernels: %d\nsteps: %d\n", st.kernels, st.steps);
  printf("compile_ms: %.1f\ncompile_lower_ms: %.1f\ncompile_llvm_ms: %.1f\ncompile_buffers_ms: %.1f\n",
         st.compile_ms, st.lower_ms, st.llvm_ms, st.compile_ms - st.lower_ms - st.llvm_ms);
  printf("%s_wall_ms: %.1f\n%s_cpu_ms: %.1f\n", train ? "open" : "compile", wall, train ? "open" : "compile", cpu);
  printf("cache_hits: %d\ncache_misses: %d\n", st.cache_hits, st.cache_misses);
  if (t) kiln_trainer_free(t);
  else kiln_model_free(m);
  return 0;
}
