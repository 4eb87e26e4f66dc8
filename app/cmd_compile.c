// `kiln compile`: ahead-of-time builds (docs/aot.md). Lowers and optimises the model like
// the JIT, writes the kernels as an object file for the chosen CPU and the plan as
// generated C (codegen/aot.h), embeds the weights with .incbin when given, and links an
// executable — or archives a library with a C header — against libkiln_rt.a with `cc`.
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "codegen/aot.h"
#include "codegen/compile.h"
#include "passes/passes.h"
#include "api/bind.h"
#include "app/cli.h"
#include "runtime/process.h"

#ifndef KILN_RT_LIB_PATH
#define KILN_RT_LIB_PATH ""
#endif
#ifndef KILN_SOURCE_DIR
#define KILN_SOURCE_DIR ""
#endif
#ifdef KILN_RT_SANITIZE  // a sanitizer build's runtime needs the sanitizer's libraries
#define KILN_RT_SANITIZE_SP " " KILN_RT_SANITIZE
#else
#define KILN_RT_SANITIZE NULL
#define KILN_RT_SANITIZE_SP ""
#endif

// What libkiln_rt.a needs at link time (also written to DIR/link_flags for libraries).
#define LINK_FLAGS "-fopenmp -lcjson -lm" KILN_RT_SANITIZE_SP

static bool is_file(const char *path) {
  struct stat sb;
  return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

// The C compiler: $CC, else `cc` on $PATH (as main.c read them).
static bool find_cc(const CliOptions *o, char *out, size_t size, Diag *d) {
  const char *cc = o->cc;
  if (cc && *cc) {
    snprintf(out, size, "%s", cc);
    return true;
  }
  const char *path = o->path;
  for (const char *p = path ? path : ""; *p;) {
    const char *colon = strchr(p, ':');
    size_t n = colon ? (size_t)(colon - p) : strlen(p);
    snprintf(out, size, "%.*s/cc", (int)n, p);
    if (n && access(out, X_OK) == 0) return true;
    p += n + (colon ? 1 : 0);
  }
  return diag_error(d, "no C compiler: kiln compile links with `cc`; install one (e.g. gcc) or "
                       "set CC");
}

// libkiln_rt.a: $KILN_RT_LIB, else next to the kiln executable (its build tree layout),
// else where the build configured it.
static bool find_runtime(const CliOptions *o, char *out, size_t size, Diag *d) {
  const char *env = o->rt_lib;
  if (env && *env) {
    snprintf(out, size, "%s", env);
    if (is_file(out)) return true;
    return diag_error(d, "KILN_RT_LIB=%s: no such file (the runtime library libkiln_rt.a)", env);
  }
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n > 0) {
    exe[n] = 0;
    char *slash = strrchr(exe, '/');
    if (slash) *slash = 0;
    const char *places[] = {"%s/runtime/libkiln_rt.a", "%s/libkiln_rt.a", "%s/../lib/libkiln_rt.a"};
    for (int i = 0; i < 3; i++) {
      snprintf(out, size, places[i], exe);
      if (is_file(out)) return true;
    }
  }
  snprintf(out, size, "%s", KILN_RT_LIB_PATH);
  if (*out && is_file(out)) return true;
  return diag_error(d, "cannot find the runtime library libkiln_rt.a (looked next to the kiln "
                       "executable and in \"%s\"); set KILN_RT_LIB to its path", KILN_RT_LIB_PATH);
}

// Where runtime/aot.h is: $KILN_INCLUDE, else the configured source tree.
static bool find_include(const CliOptions *o, char *out, size_t size, Diag *d) {
  const char *env = o->include;
  snprintf(out, size, "%s", env && *env ? env : KILN_SOURCE_DIR);
  char probe[PATH_MAX + 32];
  snprintf(probe, sizeof probe, "%s/runtime/aot.h", out);
  if (is_file(probe)) return true;
  return diag_error(d, "cannot find kiln's runtime headers (%s); set KILN_INCLUDE to the "
                       "directory holding runtime/aot.h", probe);
}

// The needed parameters, converted to their dtypes and checked as kiln run does, written as
// one safetensors image (what the executable embeds).
static bool write_weights(const IrGraph *g, const bool *need, const char *weights, const char *path,
                          size_t *size, Diag *d) {
  StFile wf;
  if (!st_read(weights, &wf, d)) return false;
  int nn = g->n_nodes, n = 0;
  void **value = calloc((size_t)nn + 1, sizeof *value);
  const IrNode **nodes = calloc((size_t)nn + 1, sizeof *nodes);
  const char **names = calloc((size_t)nn + 1, sizeof *names);
  bool ok = value && nodes && names;
  for (int i = 0; i < nn && ok; i++) {
    const IrNode *p = g->nodes[i];
    if (p->op != IR_OP_PARAM || !need[i]) continue;
    if (!(value[i] = malloc((size_t)ir_numel(&p->shape) * dt_size(p->dtype) + 1))) ok = false;
    nodes[n] = p;
    names[n++] = p->name;
  }
  if (!ok) diag_error(d, "out of memory reading %s", weights);
  ok = ok && fe_bind_native(g, &wf, IR_OP_PARAM, value, NULL, NULL, d) &&
       fe_write_native(path, nodes, names, n, value, DT_F32, d);
  struct stat sb;
  if (ok && stat(path, &sb) == 0) *size = (size_t)sb.st_size;
  for (int i = 0; value && i < nn; i++) free(value[i]);
  free(value);
  free(nodes);
  free(names);
  st_free(&wf);
  return ok;
}

static bool write_incbin(const char *asm_path, const char *blob, Diag *d) {
  FILE *f = fopen(asm_path, "w");
  if (!f) return diag_error(d, "cannot write %s: %s", asm_path, strerror(errno));
  fprintf(f, "# Generated by kiln compile: the weights, embedded read-only.\n"
             "  .section .rodata\n  .balign 64\n  .globl kiln_embedded_weights\n"
             "  .type kiln_embedded_weights, @object\nkiln_embedded_weights:\n"
             "  .incbin \"%s\"\n  .size kiln_embedded_weights, . - kiln_embedded_weights\n"
             "  .section .note.GNU-stack,\"\",@progbits\n", blob);
  return fclose(f) == 0 || diag_error(d, "cannot write %s", asm_path);
}

static bool copy_file(const char *from, const char *to, Diag *d) {
  FILE *in = fopen(from, "rb"), *out = in ? fopen(to, "wb") : NULL;
  if (!in || !out) {
    if (in) fclose(in);
    return diag_error(d, "cannot copy %s to %s: %s", from, to, strerror(errno));
  }
  char buf[1 << 16];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, in)) > 0) fwrite(buf, 1, n, out);
  fclose(in);
  return fclose(out) == 0 || diag_error(d, "cannot write %s", to);
}

// DIR/kiln_model.h: the model's inputs and outputs, then the API (runtime/aot_api.h).
static bool write_header(const IrGraph *g, const char *inc, const char *path, const char *target,
                         Diag *d) {
  char api[PATH_MAX + 32];
  snprintf(api, sizeof api, "%s/runtime/aot_api.h", inc);
  FILE *in = fopen(api, "r"), *f = in ? fopen(path, "w") : NULL;
  if (!in || !f) {
    if (in) fclose(in);
    return diag_error(d, "cannot write %s (from %s): %s", path, api, strerror(errno));
  }
  fprintf(f, "// Generated by kiln compile --emit lib from %s for %s.\n// Inputs (index: name dtype[shape]):\n", g->file, target);
  int k = 0;
  char s[160];
  for (int i = 0; i < g->n_nodes; i++)
    if (g->nodes[i]->op == IR_OP_INPUT)
      fprintf(f, "//   %d: %s %s%s\n", k++, g->nodes[i]->name, dt_name(g->nodes[i]->dtype),
              ir_shape_str(&g->nodes[i]->shape, s, sizeof s));
  fprintf(f, "// Outputs, then losses:\n");
  for (int j = 0; j < g->n_outputs + g->n_losses; j++) {
    const IrNode *o = j < g->n_outputs ? g->outputs[j] : g->losses[j - g->n_outputs].node;
    fprintf(f, "//   %d: %s %s%s\n", j, j < g->n_outputs ? o->name : g->losses[j - g->n_outputs].name,
            dt_name(o->dtype), ir_shape_str(&o->shape, s, sizeof s));
  }
  fprintf(f, "// Link: cc app.c -I DIR DIR/libkiln_model.a DIR/libkiln_rt.a %s\n\n", LINK_FLAGS);
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, in)) > 0) fwrite(buf, 1, n, f);
  fclose(in);
  return fclose(f) == 0 || diag_error(d, "cannot write %s", path);
}

// The intermediate files of one build, in its temporary directory.
typedef struct Parts {
  char kernels[PATH_MAX + 32], tables_c[PATH_MAX + 32], tables_o[PATH_MAX + 32];  // tmp/name
  char blob[PATH_MAX + 32], wasm[PATH_MAX + 32], wobj[PATH_MAX + 32];  // weights: image, .incbin, object
  bool weights;
} Parts;

static bool link_exe(const char *cc, const char *rt, const char *exe, const Parts *p, Diag *d) {
  char *argv[16] = {(char *)cc, "-o", (char *)exe, (char *)p->kernels, (char *)p->tables_o};
  int n = 5;
  if (p->weights) argv[n++] = (char *)p->wobj;
  argv[n++] = (char *)rt;
  argv[n++] = "-fopenmp";
  argv[n++] = "-lcjson";
  argv[n++] = "-lm";
  argv[n++] = KILN_RT_SANITIZE;  // NULL (the end) unless a sanitizer build
  return rt_run(argv, d);
}

// DIR/libkiln_model.a (kernels, tables, weights), a copy of libkiln_rt.a, kiln_model.h and
// link_flags (the rest of the link line).
static bool write_lib(const IrGraph *g, const char *rt, const char *inc, const char *dir,
                      const char *target, const Parts *p, Diag *d) {
  if (mkdir(dir, 0777) != 0 && errno != EEXIST)
    return diag_error(d, "-o %s: cannot create the directory: %s", dir, strerror(errno));
  char a[PATH_MAX + 32], r[PATH_MAX + 32], h[PATH_MAX + 32], l[PATH_MAX + 32];
  snprintf(a, sizeof a, "%s/libkiln_model.a", dir);
  snprintf(r, sizeof r, "%s/libkiln_rt.a", dir);
  snprintf(h, sizeof h, "%s/kiln_model.h", dir);
  snprintf(l, sizeof l, "%s/link_flags", dir);
  unlink(a);  // ar adds to an existing archive
  char *argv[8] = {"ar", "rcs", a, (char *)p->kernels, (char *)p->tables_o,
                   p->weights ? (char *)p->wobj : NULL};
  if (!rt_run(argv, d) || !copy_file(rt, r, d) || !write_header(g, inc, h, target, d)) return false;
  FILE *f = fopen(l, "w");
  if (!f) return diag_error(d, "cannot write %s: %s", l, strerror(errno));
  fprintf(f, "%s\n", LINK_FLAGS);
  return fclose(f) == 0 || diag_error(d, "cannot write %s", l);
}

// Writes program prog as C tables and compiles them.
static bool write_tables(const RtProgram *prog, const char *cc, const char *inc, const CgAotTables *t,
                         const Parts *p, Diag *d) {
  FILE *f = fopen(p->tables_c, "w");
  if (!f) return diag_error(d, "cannot write %s: %s", p->tables_c, strerror(errno));
  bool ok = cg_aot_write_tables(f, prog, t, d);
  if (fclose(f) != 0 && ok) ok = diag_error(d, "cannot write %s", p->tables_c);
  char iflag[PATH_MAX + 4];
  snprintf(iflag, sizeof iflag, "-I%s", inc);
  return ok && rt_run((char *[]){(char *)cc, "-std=c11", "-O1", "-fPIC", iflag, "-c",
                              (char *)p->tables_c, "-o", (char *)p->tables_o, NULL}, d);
}

static bool build(const CliOptions *o, const IrGraph *g, const CgOptions *copt, const char *tmp,
                  Diag *d) {
  char cc[PATH_MAX], rt[PATH_MAX], inc[PATH_MAX];
  if (!find_cc(o, cc, sizeof cc, d) || !find_runtime(o, rt, sizeof rt, d) ||
      !find_include(o, inc, sizeof inc, d))
    return false;
  bool *want = calloc((size_t)g->n_nodes + 1, sizeof *want);
  if (!want) return diag_error(d, "out of memory");
  for (int j = 0; j < g->n_outputs; j++) want[g->outputs[j]->id] = true;
  for (int j = 0; j < g->n_losses; j++) want[g->losses[j].node->id] = true;
  bool *need = cg_needed(g, want);  // every output and loss: the run picks among them
  if (!need) {
    free(want);
    return diag_error(d, "out of memory");
  }

  Parts p = {.weights = o->weights != NULL};
  snprintf(p.kernels, sizeof p.kernels, "%s/kernels.o", tmp);
  snprintf(p.tables_c, sizeof p.tables_c, "%s/tables.c", tmp);
  snprintf(p.tables_o, sizeof p.tables_o, "%s/tables.o", tmp);
  snprintf(p.blob, sizeof p.blob, "%s/weights.safetensors", tmp);
  snprintf(p.wasm, sizeof p.wasm, "%s/weights.s", tmp);
  snprintf(p.wobj, sizeof p.wobj, "%s/weights.o", tmp);
  bool lib = o->emit && !strcmp(o->emit, "lib");
  CgSteps steps = {0};
  char target[128];
  CgAotTables t = {.has_weights = p.weights, .library = lib};
  RtProgram prog = {0};
  bool ok = !p.weights ||
            (write_weights(g, need, o->weights, p.blob, &t.weights_size, d) &&
             write_incbin(p.wasm, p.blob, d) &&
             rt_run((char *[]){cc, "-c", p.wasm, "-o", p.wobj, NULL}, d));
  // The JIT's description of the same steps, buffers in the same planned arena; the
  // outputs and losses are kept to the end of a run (a run picks among them).
  ok = ok && cg_aot_object(g, need, copt, p.kernels, &steps, target, d) &&
       cg_describe(g, need, want, &steps, !copt->no_memplan, &prog, NULL, d);
  prog.target = target;
  ok = ok && write_tables(&prog, cc, inc, &t, &p, d) &&
       (lib ? write_lib(g, rt, inc, o->output, target, &p, d) : link_exe(cc, rt, o->output, &p, d));
  if (ok)
    fprintf(stderr, "kiln: compiled %d steps for %s%s into %s\n", steps.n, target,
            p.weights ? ", weights embedded" : "", o->output);
  const char *files[] = {p.kernels, p.tables_c, p.tables_o, p.blob, p.wasm, p.wobj};
  if (!o->keep_tmp)
    for (int i = 0; i < 6; i++) unlink(files[i]);
  cg_describe_free(&prog);
  cg_steps_free(&steps);
  free(need);
  free(want);
  return ok;
}

int cmd_compile(const CliOptions *o) {
  if (!o->output) {
    fprintf(stderr, "kiln: compile needs -o %s (kiln compile --help)\n",
            o->emit && !strcmp(o->emit, "lib") ? "DIR" : "EXE");
    return EXIT_USAGE;
  }
  Diag d = {0};
  CgOptions copt = {.tuning = o->tuning, .no_memplan = pass_disabled(o->disabled, o->n_disabled, "memplan")};
  char cpu[64];
  if (!cg_aot_target("--cpu ", o->cpu, &copt, cpu, &d)) {
    fprintf(stderr, "kiln: %s\nusage: kiln compile MODEL -o EXE [--cpu native|x86-64-v3|x86-64-v4|NAME] ...\n", d.msg);
    return EXIT_USAGE;
  }
  IrGraph g;
  if (!cli_load(o, NULL, &g)) return EXIT_USER;
  const char *base = o->tmpdir;
  char tmp[PATH_MAX];
  snprintf(tmp, sizeof tmp, "%s/kiln-compile-XXXXXX", base && *base ? base : "/tmp");
  bool ok = mkdtemp(tmp) != NULL;
  if (!ok) diag_error(&d, "cannot create a temporary directory %s: %s", tmp, strerror(errno));
  ok = ok && build(o, &g, &copt, tmp, &d);
  if (!o->keep_tmp) rmdir(tmp);
  else fprintf(stderr, "kiln: intermediate files kept in %s\n", tmp);
  if (!ok) cli_error(&d);
  ir_graph_free(&g);
  return ok ? 0 : EXIT_USER;
}
