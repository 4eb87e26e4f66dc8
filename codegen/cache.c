// The compile cache's keys (docs/cache.md): a key per group of functions (a kernel and the
// helpers it calls, compiled to one object by codegen/objects.c) hashes everything that
// changes the group's code: the LLVM IR text of its functions, with each attribute-group
// (#N) and metadata (!N) reference replaced by what it stands for, so that numbering shifts
// elsewhere in the module neither hide a change nor cost a miss; the target (triple, CPU,
// features); the tuning; the kiln and LLVM versions; how objects are made (the precision is
// in the IR: a bf16 GEMM's code differs).
#include <stdlib.h>
#include <string.h>

#include <llvm-c/Core.h>

#include "codegen/cg.h"

#ifndef KILN_VERSION
#define KILN_VERSION "unknown"
#endif

// How an object is made from a group: change it whenever objects.c changes how.
#define OBJECT_RECIPE "objects.c v2: " CG_PASSES ", " CG_QUICK_ATTR " " CG_PASSES_QUICK ", CodeGenLevelAggressive, RelocPIC, JITDefault"

typedef struct Slice {
  const char *s;
  size_t n;
} Slice;

typedef struct FnText {
  const char *name;  // into the module text, not terminated: name_len
  size_t name_len;
  Slice text;
} FnText;

typedef struct ModuleText {
  char *all;           // LLVMPrintModuleToString's
  FnText *fns;         // sorted by name
  int n_fns;
  Slice *attrs, *mds;  // "attributes #N = {...}" and "!N = ..." definitions, by N
  int n_attrs, n_mds;
} ModuleText;

static int cmp_name(const char *a, size_t an, const char *b, size_t bn) {
  int c = memcmp(a, b, an < bn ? an : bn);
  return c ? c : (an > bn) - (an < bn);
}

static int by_fn_name(const void *pa, const void *pb) {
  const FnText *a = pa, *b = pb;
  return cmp_name(a->name, a->name_len, b->name, b->name_len);
}

// Stores a definition's text at index N of a growing table; false when out of memory.
static bool put_def(Slice **v, int *n, long idx, Slice s) {
  if (idx < 0 || idx > 1 << 24) return true;  // not a number LLVM would print: ignored
  if (idx >= *n) {
    int cap = (int)idx + 64;
    Slice *grown = realloc(*v, (size_t)cap * sizeof **v);
    if (!grown) return false;
    memset(grown + *n, 0, (size_t)(cap - *n) * sizeof *grown);
    *v = grown, *n = cap;
  }
  (*v)[idx] = s;
  return true;
}

// Splits the printed module into its function definitions and numbered definitions.
static bool parse_module(LLVMModuleRef mod, ModuleText *t) {
  memset(t, 0, sizeof *t);
  t->all = LLVMPrintModuleToString(mod);
  int cap = 0;
  bool ok = t->all != NULL;
  for (char *line = t->all; ok && line && *line;) {
    char *eol = strchr(line, '\n');
    char *next = eol ? eol + 1 : NULL;
    size_t len = eol ? (size_t)(eol - line) : strlen(line);
    if (strncmp(line, "define ", 7) == 0) {
      char *at = memchr(line, '@', len), *paren = at ? strchr(at, '(') : NULL;
      char *end = strstr(line, "\n}\n");  // a definition ends with "}" alone on a line
      if (!at || !paren || !end) break;   // not LLVM's printing as known: no keys
      const char *name = at + 1;
      size_t name_len = (size_t)(paren - name);
      if (*name == '"' && name_len >= 2) name++, name_len -= 2;
      if (t->n_fns == cap) {
        cap = cap ? 2 * cap : 64;
        FnText *grown = realloc(t->fns, (size_t)cap * sizeof *grown);
        if (!grown) ok = false;
        else t->fns = grown;
      }
      if (ok) t->fns[t->n_fns++] = (FnText){name, name_len, {line, (size_t)(end + 2 - line)}};
      next = end + 3;
    } else if (strncmp(line, "attributes #", 12) == 0) {
      ok = put_def(&t->attrs, &t->n_attrs, strtol(line + 12, NULL, 10), (Slice){line, len});
    } else if (line[0] == '!' && line[1] >= '0' && line[1] <= '9') {
      ok = put_def(&t->mds, &t->n_mds, strtol(line + 1, NULL, 10), (Slice){line, len});
    }
    line = next;
  }
  if (ok) qsort(t->fns, (size_t)t->n_fns, sizeof *t->fns, by_fn_name);
  return ok;
}

static void module_text_free(ModuleText *t) {
  if (t->all) LLVMDisposeMessage(t->all);
  free(t->fns);
  free(t->attrs);
  free(t->mds);
}

static const FnText *find_fn(const ModuleText *t, const char *name, size_t len) {
  FnText key = {name, len, {0}};
  return bsearch(&key, t->fns, (size_t)t->n_fns, sizeof *t->fns, by_fn_name);
}

// Hashes a function's text with #N and !N replaced by their definitions.
static void hash_fn(RtHash *h, const ModuleText *t, Slice s) {
  const char *p = s.s, *end = s.s + s.n, *run = p;
  while (p < end) {
    if ((*p != '#' && *p != '!') || p + 1 >= end || p[1] < '0' || p[1] > '9') {
      p++;
      continue;
    }
    rt_hash_bytes(h, run, (size_t)(p - run));
    char kind = *p;
    char *after;
    long idx = strtol(p + 1, &after, 10);
    const Slice *defs = kind == '#' ? t->attrs : t->mds;
    int n = kind == '#' ? t->n_attrs : t->n_mds;
    if (idx >= 0 && idx < n && defs[idx].s) {
      const char *eq = memchr(defs[idx].s, '=', defs[idx].n);  // what follows "#N = "
      Slice def = eq ? (Slice){eq, defs[idx].n - (size_t)(eq - defs[idx].s)} : defs[idx];
      rt_hash_bytes(h, &kind, 1);
      rt_hash_bytes(h, def.s, def.n);
    } else {
      rt_hash_bytes(h, p, (size_t)(after - p));
    }
    p = run = after;
  }
  rt_hash_bytes(h, run, (size_t)(p - run));
}

// What every key of cg's module shares: target, tuning, versions, recipe. The precision
// needs no entry here: a bf16 GEMM (the matmul's bf16 attribute) is other code, so its
// group's IR text, hashed per key, already differs from the fp32 one.
static RtHash context_hash(const Cg *cg) {
  RtHash h = rt_hash_start();
  unsigned major, minor, patch;
  LLVMGetVersion(&major, &minor, &patch);
  rt_hash_str(&h, "kiln " KILN_VERSION);
  rt_hash_u64(&h, (uint64_t)major << 32 | minor << 16 | patch);
  rt_hash_str(&h, OBJECT_RECIPE);
  rt_hash_str(&h, cg->triple);
  rt_hash_str(&h, cg->cpu);
  rt_hash_str(&h, cg->features);
  const RtTuning *tu = &cg->tuning;
  int64_t tuning[] = {tu->gemm_mr, tu->gemm_nv, tu->gemm_unroll, tu->gemm_kc, tu->gemm_l2_floats,
                      tu->gemm_min_items, tu->gemm_no_fuse, tu->gemm_no_prefetch,
                      tu->gemm_pf_locality, tu->attn_rows, cg->W, cg->training};
  rt_hash_bytes(&h, tuning, sizeof tuning);
  return h;
}

bool cg_cache_keys(Cg *cg, LLVMValueRef *fn, const int *group, int n, int n_groups,
                   char (*key)[RT_CACHE_KEY_CHARS + 1]) {
  ModuleText t;
  bool ok = parse_module(cg->mod, &t);
  const FnText **text = ok ? calloc((size_t)n + 1, sizeof *text) : NULL;  // fn[i]'s text
  ok = ok && text;
  for (int i = 0; ok && i < n; i++) {
    size_t len;
    const char *name = LLVMGetValueName2(fn[i], &len);
    text[i] = find_fn(&t, name, len);
    if (!text[i]) ok = false;  // a definition the split missed: no keys, no cache
  }
  RtHash ctx = context_hash(cg);
  for (int g = 0; ok && g < n_groups; g++) {
    RtHash h = ctx;
    // Members in name order (n is small per group: a selection of the next name each time).
    const FnText *last = NULL;
    for (;;) {
      const FnText *best = NULL;
      for (int i = 0; i < n; i++)
        if (group[i] == g && (!last || by_fn_name(text[i], last) > 0) && (!best || by_fn_name(text[i], best) < 0))
          best = text[i];
      if (!best) break;
      hash_fn(&h, &t, best->text);
      last = best;
    }
    rt_hash_hex(&h, key[g]);
  }
  free(text);
  module_text_free(&t);
  return ok;
}
