// The command line of an executable built by `kiln compile`: like `kiln run` for the model
// it was compiled from — same outputs, same checks and messages — with no model file and no
// LLVM. Exit codes: 0 success, 1 a problem with a tensor file, 2 a bad command line.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/aot.h"
#include "runtime/dtype.h"
#include "runtime/files.h"
#include "runtime/timing.h"

static const char *prog = "model";

static void usage(FILE *f, const RtProgram *m) {
  fprintf(f, "usage: %s --inputs IN.safetensors -o OUT.safetensors [--weights W.safetensors] "
             "[--threads N] [--iters N] [--max-memory SIZE]\n", prog);
  if (f == stderr) return;
  fprintf(f,
          "\nRuns a model in inference, as `kiln run` does, and writes every output, and every\n"
          "loss, whose inputs IN provides. Compiled ahead of time by kiln\n  from %s\n  for %s.\n"
          "  --inputs FILE      inputs (safetensors), by name; integer inputs may be I32/I64,\n"
          "                     floats F32/F64/F16/BF16 (converted when no value changes)\n"
          "  -o, --output FILE  outputs (safetensors)\n"
          "  --weights FILE     parameters (safetensors), by name; %s\n"
          "  --threads N        threads (default: KILN_NUM_THREADS, else every core)\n"
          "  --iters N          also time N more runs and print median_ms (benchmark)\n"
          "  --max-memory SIZE  refuse to run if the program's buffers need more bytes (K, M,\n"
          "                     G, T suffixes; default: the machine's physical memory)\n",
          m->name, m->target,
          m->weights ? "default: the weights embedded at compile time" : "required (none are embedded)");
  fprintf(f, "inputs:\n");
  for (int k = 0; k < m->n_inputs; k++) {
    char s[160] = "";
    for (int i = 0; i < m->inputs[k].rank; i++)
      snprintf(s + strlen(s), sizeof s - strlen(s), "%s%lld", i ? "," : "", (long long)m->inputs[k].shape[i]);
    fprintf(f, "  %-28s %s[%s]\n", m->inputs[k].name, dt_name((DType)m->inputs[k].dtype), s);
  }
  fprintf(f, "outputs:\n");
  for (int k = 0; k < m->n_outputs; k++) {
    char s[160] = "";
    for (int i = 0; i < m->outputs[k].rank; i++)
      snprintf(s + strlen(s), sizeof s - strlen(s), "%s%lld", i ? "," : "", (long long)m->outputs[k].shape[i]);
    fprintf(f, "  %-28s %s[%s]\n", m->outputs[k].name, dt_name((DType)m->outputs[k].dtype), s);
  }
}

static int usage_error(const RtProgram *m, const char *fmt, const char *arg) {
  fprintf(stderr, "%s: ", prog);
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "\n");
  usage(stderr, m);
  return 2;
}

// The outputs computable from the given inputs (bit j: outputs[j]), as kiln run selects them.
static uint64_t select_outputs(const RtProgram *m, uint64_t given, const char *inputs, Diag *d) {
  uint64_t wanted = 0;
  for (int j = 0; j < m->n_outputs; j++)
    if (!(m->outputs[j].needs & ~given)) wanted |= 1ull << j;
  if (!wanted) {
    char missing[1024] = "";
    for (int k = 0; k < m->n_inputs; k++)
      if (!(given >> k & 1))
        snprintf(missing + strlen(missing), sizeof missing - strlen(missing), "%s\"%s\"",
                 missing[0] ? ", " : "", m->inputs[k].name);
    diag_error(d, "%s: no output can be computed; missing inputs: %s", inputs, missing);
  }
  return wanted;
}

static bool write_outputs(const RtAot *a, uint64_t wanted, const char *path, Diag *d) {
  const RtProgram *m = a->m;
  StTensor *ts = calloc((size_t)m->n_outputs + 1, sizeof *ts);
  if (!ts) return diag_error(d, "out of memory writing %s", path);
  int n = 0;
  for (int j = 0; j < m->n_outputs; j++) {
    if (!(wanted >> j & 1)) continue;
    const RtTensor *o = &m->outputs[j];
    StTensor *t = &ts[n++];
    t->name = (char *)o->name;
    t->dtype = (DType)o->dtype;
    t->rank = o->rank;
    memcpy(t->shape, o->shape, sizeof t->shape);
    t->nbytes = rt_tensor_bytes(o);
    t->data = a->in.buf[o->buf];
  }
  bool ok = st_write(path, ts, n, d);
  free(ts);
  return ok;
}

int rt_aot_main(const RtProgram *m, int argc, char **argv) {
  if (argc > 0 && argv[0]) {
    const char *slash = strrchr(argv[0], '/');
    prog = slash ? slash + 1 : argv[0];
  }
  const char *weights = NULL, *inputs = NULL, *output = NULL;
  int threads = 0, iters = 0;
  uint64_t max_memory = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      usage(stdout, m);
      return 0;
    }
    bool takes = !strcmp(a, "--weights") || !strcmp(a, "--inputs") || !strcmp(a, "-o") ||
                 !strcmp(a, "--output") || !strcmp(a, "--threads") || !strcmp(a, "--iters") ||
                 !strcmp(a, "--max-memory");
    if (!takes) return usage_error(m, a[0] == '-' ? "unknown option \"%s\"" : "unexpected argument \"%s\"", a);
    if (!val) return usage_error(m, "%s needs a value", a);
    i++;
    if (!strcmp(a, "--weights")) weights = val;
    else if (!strcmp(a, "--inputs")) inputs = val;
    else if (!strcmp(a, "-o") || !strcmp(a, "--output")) output = val;
    else if (!strcmp(a, "--max-memory")) {
      if (!rt_parse_size(val, &max_memory))
        return usage_error(m, "--max-memory must be a size in bytes (a whole number, or with K, M, "
                              "G or T: 1024 to the 1st to 4th power), not \"%s\"", val);
    } else {
      char *end;
      errno = 0;
      long long v = strtoll(val, &end, 10);
      bool is_threads = !strcmp(a, "--threads");
      long long hi = is_threads ? 1024 : 1000000;
      if (errno || end == val || *end || v < 1 || v > hi)
        return usage_error(m, is_threads ? "--threads must be an integer in [1, 1024], not \"%s\""
                                         : "--iters must be an integer in [1, 1000000], not \"%s\"",
                           val);
      if (is_threads) threads = (int)v;
      else iters = (int)v;
    }
  }
  if (!inputs) return usage_error(m, "needs --inputs FILE%s", "");
  if (!output) return usage_error(m, "needs -o FILE%s", "");
  if (!weights && !m->weights)
    return usage_error(m, "needs --weights FILE (no weights were embedded at compile time)%s", "");

  Diag d = {0};
  const RtNamedPath read[] = {{"--weights", weights}, {"--inputs", inputs}};
  int bad_output = rt_output_check("-o", output, read, 2, &d);  // before any work, as kiln
  if (bad_output) {
    fprintf(stderr, "%s: %s\n", prog, d.msg);
    return bad_output;
  }
  // The executable's settings from its environment (the library below never reads it):
  // KILN_NUM_THREADS under --threads, KILN_POISON_BUFFERS (tests).
  RtTuning tuning = {0};
  rt_tuning_read(&tuning, getenv);
  if (threads) tuning.threads = threads;
  StFile wf = {0}, inf = {0};
  RtAot a = {0};
  uint64_t wanted = 0, given = 0;
  // The buffers first: a program over the memory limit is refused before any file is read.
  bool ok = rt_aot_create(m, &tuning, max_memory, &a, &d);
  ok = ok && (weights ? st_open(weights, &wf, &d)
                      : st_read_memory("embedded weights", m->weights, m->weights_size, &wf, &d));
  ok = ok && st_read(inputs, &inf, &d);
  if (ok) {
    for (int k = 0; k < m->n_inputs; k++)
      if (st_find(&inf, m->inputs[k].name)) given |= 1ull << k;
    ok = (wanted = select_outputs(m, given, inputs, &d)) != 0;
  }
  ok = ok && rt_aot_bind_weights(&a, &wf, wanted, !weights, &d);
  st_free(&wf);  // bound (or borrowed from the embedded image): one copy resident, as kiln run
  ok = ok && rt_aot_bind_inputs(&a, &inf, wanted, &d);
  ok = ok && rt_aot_run(&a, wanted, &d);
  if (ok && iters) {
    double *t = malloc((size_t)iters * sizeof *t);
    for (int i = 0; ok && t && i < iters; i++) {
      double t0 = rt_now_ms();
      ok = rt_aot_run(&a, wanted, &d);
      t[i] = rt_now_ms() - t0;
    }
    if (ok && t) {
      double median = rt_sort_median(t, iters);
      printf("median_ms: %.3f\nmin_ms: %.3f\nmax_ms: %.3f\nthreads: %d\n", median, t[0],
             t[iters - 1], a.threads);
    }
    free(t);
  }
  ok = ok && write_outputs(&a, wanted, output, &d);
  if (!ok) fprintf(stderr, "%s: %s\n", prog, d.set ? d.msg : "error");
  if (a.m) rt_aot_free(&a);
  st_free(&wf);
  st_free(&inf);
  return ok ? 0 : 1;
}
