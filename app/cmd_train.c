// `kiln train`: training a model on a data file with the JIT, through the library's
// trainer (api/train.c: one compiled program for forward, backward and the AdamW or SGD
// update; everything random depends only on (seed, step)). This file is the command:
// options, progress on stderr, --eval-data lines, checkpoints every N steps and on
// SIGINT/SIGTERM, and the final weights. Under mpirun (docs/distributed.md) every process
// trains (and evaluates) its share of each step; rank 0 alone prints and writes files, and
// a stop request on any process stops them all after the same step.
#define _POSIX_C_SOURCE 200809L  // sigaction
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "api/evaluate.h"
#include "app/cli.h"
#include "dist/dist.h"

// ---------------------------------------------------------------------------------------
// Progress on stderr: \r updates every step on a terminal, a line every 10 steps otherwise.

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void progress(int64_t step, int64_t steps, double loss, double lr, double norm,
                     int64_t examples, double elapsed, int64_t done_here, bool tty) {
  bool last = step == steps;
  if (!tty && !(step == 1 || step % 10 == 0 || last)) return;
  double per_step = done_here ? elapsed / (double)done_here : 0;
  double eta = per_step * (double)(steps - step);
  fprintf(stderr, "%sstep %lld/%lld loss %.6f lr %.3g grad-norm %.3g %.1f examples/s ETA %.0fs%s",
          tty ? "\r" : "", (long long)step, (long long)steps, loss, lr, norm,
          elapsed > 0 ? (double)examples / elapsed : 0.0, eta, tty ? (last ? "\n" : "\033[K") : "\n");
  fflush(stderr);
}

// ---------------------------------------------------------------------------------------
// Interruption: SIGINT or SIGTERM only sets a flag (nothing else is safe in a handler);
// the loop finishes the current step, writes a checkpoint and exits with 130. The handler
// resets itself (SA_RESETHAND), so a second signal ends the process at once.
// Test hooks, so that tests do not race the step loop: KILN_TEST_INTERRUPT_AT_STEP=K raises
// SIGINT during step K; KILN_TEST_AWAIT_SIGNAL_AT_STEP=K pauses during step K, saying so on
// stderr, until a signal arrives from outside (at most a minute).

static volatile sig_atomic_t interrupted;

static void on_signal(int sig) { interrupted = sig; }

static void catch_signals(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESETHAND;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
}

enum { EXIT_INTERRUPTED = 130 };

// ---------------------------------------------------------------------------------------
// The command.

typedef struct Run {
  const CliOptions *o;
  KilnTrainer *t;
  FeEvaluator eval;  // --eval-data: the inference program scoring the current weights
  bool has_eval;
  bool stopped;      // by a signal, after writing a checkpoint
  DistComm *comm;    // under mpirun, else NULL
  bool lead;         // rank 0 (or alone): prints, writes
  RtTrace trace;     // --trace: the first TRACE_STEPS steps
} Run;

enum { TRACE_STEPS = 20 };

// --eval-data: scores the current weights, one line on stderr; adds its time to *seconds.
static bool eval_now(Run *r, int64_t step, bool tty, double *seconds, Diag *d) {
  double t0 = now_s();
  FeMetrics m;
  if (!fe_eval_bind_model(&r->eval, kiln_trainer_model(r->t), d) || !fe_eval_run(&r->eval, &m, d))
    return diag_prefix(d, "evaluating at step %lld: ", (long long)step);
  if (r->lead) {
    fprintf(stderr, "%seval step %lld:", tty ? "\r\033[K" : "", (long long)step);
    fe_metrics_print(&m, stderr, true);
    fprintf(stderr, "\n");
  }
  *seconds += now_s() - t0;
  return true;
}

static bool train(Run *r, Diag *d) {
  const CliOptions *o = r->o;
  KilnTrainer *t = r->t;
  FILE *log = o->verbose ? stderr : NULL;
  // Weights (from the checkpoint when resuming) and data.
  StFile wf = {0}, df = {0};
  int64_t done = 0;
  const char *wpath = o->resume ? o->resume : o->weights ? o->weights : o->init;
  // The weights or checkpoint opened, read tensor by tensor into the trainer's buffers (a
  // checkpoint is 3x the weights: read whole it would raise the peak); the data read whole.
  bool ok = st_open(wpath, &wf, d) &&
            (o->init ? kiln_trainer_init_from(t, &wf, o->seed, r->lead ? stderr : NULL, d)
             : o->resume ? kiln_trainer_resume(t, &wf, &done, d)
                         : kiln_bind_params(kiln_trainer_model(t), &wf, d)) &&
            st_read(o->data, &df, d) && kiln_trainer_data(t, &df, d);
  st_free(&wf);
  st_free(&df);
  if (!ok) return false;
  int64_t steps = kiln_trainer_steps(t), batch = kiln_trainer_batch(t);
  int64_t procs = dist_size(r->comm), accumulate = o->accumulate > 1 ? o->accumulate : 1;
  if (o->resume && r->lead)
    fprintf(stderr, "kiln: resuming from %s at step %lld of %lld\n", o->resume, (long long)done, (long long)steps);
  if (r->lead && procs * accumulate > 1)
    fprintf(stderr, "kiln: %lld process%s x %lld batch%s of %lld: %lld examples a step\n", (long long)procs,
            procs > 1 ? "es" : "", (long long)accumulate, accumulate > 1 ? "es" : "", (long long)batch,
            (long long)(procs * accumulate * batch));
  if (o->eval_data) {  // every process scores its share of the batches
    KilnSet sets[CLI_MAX_SETS];
    KilnOptions ko = cli_kiln_options(o, sets);
    ko.log = NULL;
    if (!fe_eval_open(o->model, &ko, o->loss ? o->loss : "loss", o->eval_data, &r->eval, d))
      return diag_prefix(d, "--eval-data: ");
    r->eval.comm = r->comm;
    r->has_eval = true;
  }
  bool tty = isatty(2);
  double t0 = now_s();
  double eval_s = 0;  // time spent evaluating since t0, not training
  if (r->has_eval && !eval_now(r, done, tty, &eval_s, d)) return false;
  char path[4096];
  double wait_s = 0, reduce_bytes = 0;
  int buckets = 0;
  if (!cli_trace_begin(o, kiln_trainer_model(t), TRACE_STEPS, &r->trace, d)) return false;
  for (int64_t step = done; step < steps; step++) {
    if (step + 1 == o->test_interrupt_at) raise(SIGINT);
    if (step + 1 == o->test_await_signal_at) {
      fprintf(stderr, "kiln: test hook: awaiting a signal in step %lld\n", (long long)step + 1);
      for (int i = 0; i < 6000 && !interrupted; i++) nanosleep(&(struct timespec){0, 10000000}, NULL);
    }
    KilnStepResult res;
    if (!kiln_trainer_step(t, step, &res, d)) return diag_prefix(d, "step %lld: ", (long long)step + 1);
    int64_t here = step + 1 - done;
    if (step > done) wait_s += res.reduce_wait_s;  // the first step waits for the slowest compile too
    reduce_bytes = res.reduce_bytes;
    buckets = res.reduce_buckets;
    if (r->lead)
      progress(step + 1, steps, res.loss, res.lr, res.grad_norm, here * batch * procs * accumulate, now_s() - t0 - eval_s, here,
               tty);
    bool last = step + 1 == steps;
    if (r->has_eval && (last || (o->eval_every && (step + 1) % o->eval_every == 0)) &&
        !eval_now(r, step + 1, tty, &eval_s, d))
      return false;
    bool ckpt = o->checkpoint_every && ((step + 1) % o->checkpoint_every == 0 || last);
    bool stop = interrupted && !last;
    if (r->comm && !dist_any(r->comm, stop, &stop, d)) return false;  // all stop after the same step
    if ((ckpt || stop) && r->lead) {
      kiln_checkpoint_path(o->output, step + 1, path, sizeof path);
      if (!kiln_trainer_save(t, path, step + 1, true, d)) return false;
      if (log && !stop) fprintf(log, "kiln: checkpoint %s\n", path);
    }
    if (stop) {
      r->stopped = true;
      if (!r->lead) return true;
      if (!cli_trace_end(o, kiln_trainer_model(t), &r->trace, d)) return false;
      fprintf(stderr, "%skiln: %s after step %lld of %lld; checkpoint written to %s\n"
              "kiln: to continue, run the same command with --resume %s (same --steps, --seed "
              "and --data give the weights of an uninterrupted run)\n", tty ? "\n" : "",
              interrupted == SIGTERM ? "terminated" : "interrupted", (long long)step + 1, (long long)steps, path,
              path);
      return true;
    }
  }
  if (!r->lead) return true;
  if (procs > 1 && steps > done + 1)
    fprintf(stderr, "kiln: all-reduce of %.2f MB of gradients a step in %d bucket%s%s; waited for it %.1f ms a "
            "step after the backward (steps after the first)\n", reduce_bytes / 1e6, buckets, buckets == 1 ? "" : "s",
            o->dist_no_overlap ? " (KILN_DIST_NO_OVERLAP)" : "", wait_s * 1e3 / (double)(steps - done - 1));
  if (!kiln_trainer_save(t, o->output, steps, false, d) || !cli_trace_end(o, kiln_trainer_model(t), &r->trace, d))
    return false;
  fprintf(stderr, "kiln: trained %lld steps; wrote %d parameters to %s\n", (long long)(steps - done),
          kiln_trainer_n_params(t), o->output);
  return true;
}

// The trainer's options from the command line's.
KilnTrainOptions cli_train_options(const CliOptions *o) {
  return (KilnTrainOptions){.optimizer = o->optimizer, .lr = o->lr, .steps = o->steps ? o->steps : 100,
                            .loss = o->loss, .seed = o->seed};
}

int cmd_train(const CliOptions *o) {
  if ((!o->weights && !o->resume && !o->init) || !o->data || !o->output) {
    fprintf(stderr, "kiln: train needs --weights FILE (or --init W, or --resume CKPT), --data FILE "
                    "and -o FILE (kiln train --help)\n");
    return EXIT_USAGE;
  }
  if (o->init && (o->weights || o->resume)) {  // (--resume's weights replace --weights)
    fprintf(stderr, "kiln: train takes --init W without --weights and --resume\n");
    return EXIT_USAGE;
  }
  if (o->optimizer && strcmp(o->optimizer, "sgd") != 0 && strcmp(o->optimizer, "adamw") != 0) {
    fprintf(stderr, "kiln: --optimizer must be adamw or sgd, not \"%s\"\n", o->optimizer);
    return EXIT_USAGE;
  }
  Run r = {.o = o};
  Diag d = {0};
  int code = cli_dist_start(o, &r.comm);  // under mpirun -np N
  if (code) return code;
  r.lead = dist_rank(r.comm) == 0;
  catch_signals();
  KilnSet sets[CLI_MAX_SETS];
  KilnOptions ko = cli_kiln_options(o, sets);
  KilnTrainOptions to = cli_train_options(o);
  to.comm = r.comm;
  to.check_replicas = o->check_replicas;
  to.no_overlap = o->dist_no_overlap;
  to.accumulate = o->accumulate;
  to.bucket_mb = o->bucket_mb;
  if (!r.lead) ko.log = NULL;
  bool ok = kiln_trainer_open(o->model, &ko, &to, &r.t, &d) && train(&r, &d);
  if (!ok) {
    if (isatty(2)) fprintf(stderr, "\n");
    cli_dist_fail(r.comm, &d);
  }
  if (r.has_eval) fe_eval_free(&r.eval);
  rt_trace_free(&r.trace);  // a run that failed writes no trace
  kiln_trainer_free(r.t);
  dist_finalize(r.comm);
  return !ok ? EXIT_USER : r.stopped ? EXIT_INTERRUPTED : 0;
}
