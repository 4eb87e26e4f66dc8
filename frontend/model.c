// Model files to IR: reads a JSON model file and its includes, evaluates config (with
// --set overrides), expands blocks and repeats by template substitution, and builds the
// graph. The file format is specified in docs/model-format.md.
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/expr.h"
#include "frontend/frontend.h"
#include "runtime/files.h"
#include "runtime/text.h"

#define MAX_FILES 64
#define MAX_INCLUDE_DEPTH 16
#define MAX_BLOCK_DEPTH 32
// Config entries: FE_DEFAULT_MAX_CONFIG by default (lookups are linear). An entry may name
// the next, and evaluating one recurses through the chain: MAX_CONFIG_CHAIN bounds the depth
// (the stack) whatever the limit on entries.
#define MAX_CONFIG_CHAIN 4096
// Block instances and nodes by default (FE_DEFAULT_MAX_NODES): repeats multiply.
#define MAX_FILE_BYTES (64 << 20)

// ---------------------------------------------------------------------------------------
// Loader state.
typedef struct {
  const char *name;
  cJSON *value;      // number or expression string
  const char *file;  // where it was (last) defined
  double v;
  bool is_int, done, busy;
} ConfigEntry;

typedef struct {
  const char *name;
  cJSON *def;
  const char *file;
} Block;

typedef struct {   // an item of a top-level list, with the file it came from
  cJSON *item;
  const char *file;
  int index;
} Item;

typedef struct {
  Item *v;
  int n, cap;
} ItemList;

typedef struct {   // an op node's input names, resolved once every node exists
  IrNode *node;
  const char **names;
} Pending;

typedef struct Loader {
  IrGraph *g;
  Diag *d;
  cJSON *roots[MAX_FILES];
  int n_roots;
  const char *include_stack[MAX_INCLUDE_DEPTH];
  int include_depth;
  ConfigEntry *config;
  int n_config, cap_config;
  Block *blocks;
  int n_blocks, cap_blocks;
  ItemList inputs, params, nodes, outputs, losses, groups;
  Pending *pending;
  int n_pending, cap_pending;
  int block_depth;
  int64_t block_instances;
  int64_t max_nodes;  // block instances and nodes
  int64_t max_config;
  int config_chain;   // config entries being evaluated, each in terms of the next
  bool chain_too_deep;  // its error names the deepest entry, not every one above it
} Loader;

// A block instance: its arguments (strings) and its loop variable, for template expansion.
typedef struct {
  int n_args;
  const char **arg_names;
  const char **arg_values;
  const char *var;      // loop variable name or NULL
  double var_value;
  const char *file;     // the file the templates come from
  const char *path;     // JSON path prefix inside that file ("blocks.layer.")
  const char *via;      // " (in models/x.json: nodes[2] i=3)" or ""
} Scope;

#define GROW(arr, n, cap)                                                 \
  do {                                                                    \
    if ((n) == (cap)) {                                                   \
      (cap) = (cap) ? 2 * (cap) : 16;                                     \
      (arr) = realloc((arr), (size_t)(cap) * sizeof *(arr));              \
      if (!(arr)) abort();                                                \
    }                                                                     \
  } while (0)

static void items_push(ItemList *l, cJSON *item, const char *file, int index) {
  GROW(l->v, l->n, l->cap);
  l->v[l->n++] = (Item){item, file, index};
}

static char *where_str(Loader *L, const Scope *s, const char *list, int index) {
  return arena_printf(&L->g->arena, "%s: %s%s[%d]%s", s->file, s->path, list, index, s->via);
}

// ---------------------------------------------------------------------------------------
// JSON helpers.
// Rejects keys not in the allowed list (a typo is an error, not a silent default).
static bool check_keys(Loader *L, const cJSON *obj, const char *where, const char *const *keys) {
  for (const cJSON *c = obj->child; c; c = c->next) {
    bool ok = false;
    for (int i = 0; keys[i] && !ok; i++) ok = strcmp(c->string, keys[i]) == 0;
    if (!ok) {
      char list[256] = "";
      for (int i = 0; keys[i]; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "", keys[i]);
      return diag_error(L->d, "%s: unknown key \"%s\" (expected one of: %s)", where, c->string,
                        list);
    }
  }
  return true;
}

static int cmp_keys(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

// cJSON keeps every copy of a repeated key and lookups see only the first, so a repeated
// key would be silently ignored: reject it, naming its JSON path.
static bool check_no_duplicate_keys(const cJSON *j, const char *path, char *at, size_t len,
                                    Diag *d) {
  size_t cap = 512;
  if (cJSON_IsObject(j)) {
    int n = cJSON_GetArraySize(j);
    const char **keys = malloc(((size_t)n + 1) * sizeof *keys);
    if (!keys) abort();
    int k = 0;
    for (const cJSON *c = j->child; c; c = c->next) keys[k++] = c->string;
    qsort(keys, (size_t)n, sizeof *keys, cmp_keys);
    for (k = 1; k < n; k++)
      if (strcmp(keys[k - 1], keys[k]) == 0) {
        diag_error(d, "%s: %s%s\"%s\" appears twice", path, at, len ? ": key " : "key ", keys[k]);
        free(keys);
        return false;
      }
    free(keys);
  }
  int i = 0;
  for (const cJSON *c = j->child; c; c = c->next, i++) {
    if (!cJSON_IsObject(c) && !cJSON_IsArray(c)) continue;
    int w = cJSON_IsObject(j) ? snprintf(at + len, cap - len, "%s%s", len ? "." : "", c->string)
                              : snprintf(at + len, cap - len, "[%d]", i);
    size_t next = w < 0 || (size_t)w >= cap - len ? cap - 1 : len + (size_t)w;
    if (!check_no_duplicate_keys(c, path, at, next, d)) return false;
    at[len] = 0;
  }
  return true;
}

// Line and column (from 1) of `at` in text.
static void text_position(const char *text, const char *at, int *line, int *col) {
  *line = *col = 1;
  for (const char *p = text; at && p < at && *p; p++) {
    if (*p == '\n') ++*line, *col = 1;
    else ++*col;
  }
}

static bool parse_json(const char *path, cJSON **out, Diag *d) {
  char *text = NULL;
  size_t len = 0;
  if (!rt_read_text(path, MAX_FILE_BYTES, "a model file", &text, &len, d)) return false;
  int line, col;
  long nul = rt_json_find_nul(text, len);  // cJSON would cut "x\u0000y" to "x" unseen
  if (nul >= 0) {
    text_position(text, text + nul, &line, &col);
    free(text);
    return diag_error(d, "%s:%d:%d: a NUL character (\\u0000 or a zero byte) in a string: names and "
                      "strings cannot hold one", path, line, col);
  }
  const char *end = NULL;
  cJSON *root = cJSON_ParseWithLengthOpts(text, len + 1, &end, 1);  // + the NUL
  if (!root) {
    text_position(text, end ? end : cJSON_GetErrorPtr(), &line, &col);
    free(text);
    return diag_error(d, "%s:%d:%d: malformed JSON", path, line, col);
  }
  free(text);
  if (!cJSON_IsObject(root)) {
    cJSON_Delete(root);
    return diag_error(d, "%s: the model must be a JSON object", path);
  }
  char at[512] = "";
  if (!check_no_duplicate_keys(root, path, at, 0, d)) {
    cJSON_Delete(root);
    return false;
  }
  *out = root;
  return true;
}

// ---------------------------------------------------------------------------------------
// Files and includes.
static char *resolve_relative(Loader *L, const char *from, const char *name) {
  if (name[0] == '/') return arena_strdup(&L->g->arena, name);
  const char *slash = strrchr(from, '/');
  if (!slash) return arena_strdup(&L->g->arena, name);
  return arena_printf(&L->g->arena, "%.*s/%s", (int)(slash - from), from, name);
}

static bool collect_list(Loader *L, cJSON *root, const char *file, const char *key,
                         ItemList *out, bool object_ok) {
  cJSON *list = cJSON_GetObjectItemCaseSensitive(root, key);
  if (!list) return true;
  if (object_ok) {  // losses: {"name": "tensor"}
    if (!cJSON_IsObject(list))
      return diag_error(L->d, "%s: %s: must be an object {\"loss name\": \"tensor\"}, not %s",
                        file, key, rt_json_kind(list));
    int i = 0;
    for (cJSON *c = list->child; c; c = c->next) items_push(out, c, file, i++);
    return true;
  }
  if (!cJSON_IsArray(list))
    return diag_error(L->d, "%s: %s: must be an array, not %s", file, key, rt_json_kind(list));
  int i = 0;
  for (cJSON *c = list->child; c; c = c->next) items_push(out, c, file, i++);
  return true;
}

static bool load_file(Loader *L, const char *path);

static bool load_includes(Loader *L, cJSON *root, const char *path) {
  cJSON *inc = cJSON_GetObjectItemCaseSensitive(root, "include");
  if (!inc) return true;
  if (cJSON_IsString(inc)) {
    if (!inc->valuestring[0]) return diag_error(L->d, "%s: include: the file name is empty", path);
    if (!load_file(L, resolve_relative(L, path, inc->valuestring)))
      return diag_prefix(L->d, "%s: include: ", path);
    return true;
  }
  if (!cJSON_IsArray(inc))
    return diag_error(L->d, "%s: include: must be a file name or an array of them", path);
  int i = 0;
  for (cJSON *c = inc->child; c; c = c->next, i++) {
    if (!cJSON_IsString(c) || !c->valuestring[0])
      return diag_error(L->d, "%s: include[%d]: must be a file name string", path, i);
    if (!load_file(L, resolve_relative(L, path, c->valuestring)))
      return diag_prefix(L->d, "%s: include[%d]: ", path, i);
  }
  return true;
}

static ConfigEntry *config_find(Loader *L, const char *name, size_t len) {
  for (int i = 0; i < L->n_config; i++)
    if (strlen(L->config[i].name) == len && strncmp(L->config[i].name, name, len) == 0)
      return &L->config[i];
  return NULL;
}

static bool load_file(Loader *L, const char *path) {
  for (int i = 0; i < L->include_depth; i++)
    if (strcmp(L->include_stack[i], path) == 0)
      return diag_error(L->d, "%s: includes itself (through %s)", path,
                        L->include_stack[L->include_depth - 1]);
  if (L->include_depth == MAX_INCLUDE_DEPTH || L->n_roots == MAX_FILES)
    return diag_error(L->d, "%s: too many nested or total includes", path);
  cJSON *root = NULL;
  if (!parse_json(path, &root, L->d)) return false;
  L->roots[L->n_roots++] = root;
  L->include_stack[L->include_depth++] = path;
  static const char *const keys[] = {"format", "name", "description", "include", "config",
                                     "inputs", "params", "blocks", "nodes", "outputs",
                                     "losses", "output_groups", NULL};
  bool ok = check_keys(L, root, path, keys) && load_includes(L, root, path);
  L->include_depth--;
  if (!ok) return false;

  cJSON *fmt = cJSON_GetObjectItemCaseSensitive(root, "format");
  if (fmt && !(cJSON_IsString(fmt) && strcmp(fmt->valuestring, "kiln-model/1") == 0))
    return diag_error(L->d, "%s: format: expected \"kiln-model/1\"", path);

  cJSON *cfg = cJSON_GetObjectItemCaseSensitive(root, "config");
  if (cfg) {
    if (!cJSON_IsObject(cfg)) return diag_error(L->d, "%s: config: must be an object", path);
    for (cJSON *c = cfg->child; c; c = c->next) {
      if (!cJSON_IsNumber(c) && !cJSON_IsString(c))
        return diag_error(L->d, "%s: config.%s: must be a number or an expression string, not %s",
                          path, c->string, rt_json_kind(c));
      size_t len = strlen(c->string);
      if (len == 0 || !(c->string[0] == '_' || (c->string[0] | 32) >= 'a') ||
          strspn(c->string, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") != len ||
          (c->string[0] >= '0' && c->string[0] <= '9'))
        return diag_error(L->d, "%s: config.%s: a config name must be a word (letters, digits, _)",
                          path, c->string);
      ConfigEntry *e = config_find(L, c->string, len);
      if (!e) {
        if (L->n_config >= L->max_config)
          return diag_error(L->d, "%s: config.%s: more than %lld config entries (raise the limit "
                            "with --max-config N)", path, c->string, (long long)L->max_config);
        GROW(L->config, L->n_config, L->cap_config);
        e = &L->config[L->n_config++];
        memset(e, 0, sizeof *e);
        e->name = c->string;
      }
      e->value = c;
      e->file = path;
    }
  }
  cJSON *blocks = cJSON_GetObjectItemCaseSensitive(root, "blocks");
  if (blocks) {
    if (!cJSON_IsObject(blocks)) return diag_error(L->d, "%s: blocks: must be an object", path);
    for (cJSON *b = blocks->child; b; b = b->next) {
      for (int i = 0; i < L->n_blocks; i++)
        if (strcmp(L->blocks[i].name, b->string) == 0)
          return diag_error(L->d, "%s: blocks.%s: already defined in %s", path, b->string,
                            L->blocks[i].file);
      if (!cJSON_IsObject(b)) return diag_error(L->d, "%s: blocks.%s: must be an object", path, b->string);
      GROW(L->blocks, L->n_blocks, L->cap_blocks);
      L->blocks[L->n_blocks++] = (Block){b->string, b, path};
    }
  }
  return collect_list(L, root, path, "inputs", &L->inputs, false) &&
         collect_list(L, root, path, "params", &L->params, false) &&
         collect_list(L, root, path, "nodes", &L->nodes, false) &&
         collect_list(L, root, path, "outputs", &L->outputs, false) &&
         collect_list(L, root, path, "losses", &L->losses, true) &&
         collect_list(L, root, path, "output_groups", &L->groups, false);
}

// ---------------------------------------------------------------------------------------
// Config and expressions.
static bool config_value(Loader *L, ConfigEntry *e, double *out);

static bool lookup_config(void *ctx, const char *name, size_t len, double *out) {
  Loader *L = ctx;
  ConfigEntry *e = config_find(L, name, len);
  return e && config_value(L, e, out);
}

static bool config_value(Loader *L, ConfigEntry *e, double *out) {
  if (!e->done) {
    if (e->busy) {
      diag_error(L->d, "%s: config.%s: defined in terms of itself", e->file, e->name);
      return false;
    }
    if (L->config_chain == MAX_CONFIG_CHAIN) {
      L->chain_too_deep = true;
      return diag_error(L->d, "%s: config.%s: defined through a chain of more than %d entries",
                        e->file, e->name, MAX_CONFIG_CHAIN);
    }
    L->config_chain++;
    e->busy = true;
    bool ok;
    if (cJSON_IsNumber(e->value)) {
      e->v = e->value->valuedouble;
      ok = isfinite(e->v) ||
           diag_error(L->d, "%s: config.%s: the number is too large", e->file, e->name);
    } else {
      ok = expr_eval(e->value->valuestring, lookup_config, L, &e->v, L->d);
      if (!ok && !L->chain_too_deep) diag_prefix(L->d, "%s: config.%s: ", e->file, e->name);
    }
    e->busy = false;
    L->config_chain--;
    if (!ok) return false;
    long long w;
    e->is_int = expr_whole(e->v, &w);
    e->done = true;
  }
  *out = e->v;
  return true;
}

typedef struct {
  Loader *L;
  const Scope *s;
  int depth;
} ScopeCtx;

static bool lookup_scope(void *ctx, const char *name, size_t len, double *out) {
  ScopeCtx *c = ctx;
  const Scope *s = c->s;
  if (s->var && strlen(s->var) == len && strncmp(s->var, name, len) == 0) {
    *out = s->var_value;
    return true;
  }
  for (int i = 0; i < s->n_args; i++)
    if (strlen(s->arg_names[i]) == len && strncmp(s->arg_names[i], name, len) == 0) {
      if (c->depth > 8) return false;
      ScopeCtx inner = {c->L, &(Scope){.file = s->file, .path = "", .via = ""}, c->depth + 1};
      return expr_eval(s->arg_values[i], lookup_scope, &inner, out, NULL);
    }
  return lookup_config(c->L, name, len, out);
}

static bool eval_in_scope(Loader *L, const Scope *s, const char *src, double *out) {
  ScopeCtx c = {L, s, 0};
  return expr_eval(src, lookup_scope, &c, out, L->d);
}

// Expands "{arg}" and "{expr}" in a template string.
static char *subst(Loader *L, const Scope *s, const char *tmpl) {
  if (!strchr(tmpl, '{') && !strchr(tmpl, '}')) return arena_strdup(&L->g->arena, tmpl);
  size_t cap = strlen(tmpl) + 256, n = 0;
  char *out = malloc(cap);
  for (const char *p = tmpl; *p;) {
    const char *piece;
    size_t plen;
    char num[32];
    if (*p == '}') {
      free(out);
      diag_error(L->d, "\"%s\": '}' without '{'", tmpl);
      return NULL;
    }
    if (*p != '{') {
      piece = p;
      plen = 1;
      p++;
    } else {
      const char *close = strchr(p, '}');
      if (!close) {
        free(out);
        diag_error(L->d, "\"%s\": '{' without '}'", tmpl);
        return NULL;
      }
      char *inner = arena_printf(&L->g->arena, "%.*s", (int)(close - p - 1), p + 1);
      p = close + 1;
      piece = NULL;
      for (int i = 0; i < s->n_args; i++)
        if (strcmp(s->arg_names[i], inner) == 0) piece = s->arg_values[i];
      if (piece) {
        plen = strlen(piece);
      } else {
        double v;
        long long w;
        if (!eval_in_scope(L, s, inner, &v)) {
          free(out);
          diag_prefix(L->d, "\"%s\": ", tmpl);
          return NULL;
        }
        if (!expr_whole(v, &w)) {
          free(out);
          diag_error(L->d, "\"%s\": {%s} is %g, not a whole number", tmpl, inner, v);
          return NULL;
        }
        snprintf(num, sizeof num, "%lld", w);
        piece = num;
        plen = strlen(num);
      }
    }
    if (n + plen + 1 > cap) {
      cap = 2 * (n + plen + 1);
      out = realloc(out, cap);
    }
    memcpy(out + n, piece, plen);
    n += plen;
  }
  out[n] = 0;
  char *res = arena_strdup(&L->g->arena, out);
  free(out);
  return res;
}

// A name field: a non-empty string template.
static const char *get_name(Loader *L, const Scope *s, const cJSON *obj, const char *key,
                            const char *where) {
  cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, key);
  if (!j) {
    diag_error(L->d, "%s: missing \"%s\"", where, key);
    return NULL;
  }
  if (!cJSON_IsString(j) || !j->valuestring[0]) {
    diag_error(L->d, "%s: \"%s\" must be a non-empty string, not %s", where, key,
               cJSON_IsString(j) ? "an empty one" : rt_json_kind(j));
    return NULL;
  }
  const char *r = subst(L, s, j->valuestring);
  if (!r) diag_prefix(L->d, "%s: %s: ", where, key);
  return r;
}

// A number field: a JSON number or an expression string.
static bool eval_number(Loader *L, const Scope *s, const cJSON *j, double *out) {
  if (cJSON_IsNumber(j)) {
    *out = j->valuedouble;
    return isfinite(*out) || diag_error(L->d, "the number is too large");
  }
  if (cJSON_IsString(j)) {
    char *src = subst(L, s, j->valuestring);
    return src && eval_in_scope(L, s, src, out);
  }
  return diag_error(L->d, "must be a number or an expression string, not %s", rt_json_kind(j));
}

static bool eval_whole(Loader *L, const Scope *s, const cJSON *j, int64_t *out) {
  double v;
  long long w;
  if (!eval_number(L, s, j, &v)) return false;
  if (!expr_whole(v, &w)) {
    const char *why = v == floor(v) ? "too large for an integer" : "not a whole number";
    if (cJSON_IsString(j))
      return diag_error(L->d, "\"%s\" is %g, %s", j->valuestring, v, why);
    return diag_error(L->d, "%g is %s", v, why);
  }
  *out = w;
  return true;
}

static bool eval_shape(Loader *L, const Scope *s, const cJSON *arr, IrShape *out,
                       const char *where) {
  if (!cJSON_IsArray(arr))
    return diag_error(L->d, "%s: shape: must be an array, not %s", where, rt_json_kind(arr));
  int n = cJSON_GetArraySize(arr);
  if (n > IR_MAX_RANK) return diag_error(L->d, "%s: shape: rank %d exceeds %d", where, n, IR_MAX_RANK);
  out->rank = n;
  int i = 0;
  for (cJSON *c = arr->child; c; c = c->next, i++) {
    if (!eval_whole(L, s, c, &out->dim[i])) return diag_prefix(L->d, "%s: shape[%d]: ", where, i);
    if (out->dim[i] <= 0) {
      if (cJSON_IsString(c))
        return diag_error(L->d, "%s: shape[%d]: \"%s\" is %lld; dims must be positive", where, i,
                          c->valuestring, (long long)out->dim[i]);
      return diag_error(L->d, "%s: shape[%d]: %lld; dims must be positive", where, i,
                        (long long)out->dim[i]);
    }
  }
  return true;
}

// ---------------------------------------------------------------------------------------
// Declarations: inputs, params, op nodes, block calls.
static bool check_new_name(Loader *L, const char *name, const char *where) {
  IrNode *old = ir_graph_find(L->g, name);
  if (old) return diag_error(L->d, "%s \"%s\": name already defined at %s", where, name, old->where);
  return true;
}

static bool add_input(Loader *L, const Scope *s, const cJSON *j, int index) {
  const char *where = where_str(L, s, "inputs", index);
  static const char *const keys[] = {"name", "dtype", "shape", "doc", NULL};
  if (!cJSON_IsObject(j)) return diag_error(L->d, "%s: must be an object", where);
  if (!check_keys(L, j, where, keys)) return false;
  const char *name = get_name(L, s, j, "name", where);
  if (!name || !check_new_name(L, name, where)) return false;
  cJSON *dt = cJSON_GetObjectItemCaseSensitive(j, "dtype");
  DType t;
  if (!cJSON_IsString(dt) || !dt_parse(dt->valuestring, &t) ||
      (t != DT_F32 && t != DT_I32 && t != DT_I64))
    return diag_error(L->d, "%s \"%s\": dtype must be \"f32\", \"i32\" or \"i64\"", where, name);
  IrShape shape;
  cJSON *sh = cJSON_GetObjectItemCaseSensitive(j, "shape");
  if (!sh) return diag_error(L->d, "%s \"%s\": missing \"shape\"", where, name);
  if (!eval_shape(L, s, sh, &shape, where)) return false;
  IrNode *n = ir_graph_add(L->g, IR_OP_INPUT, name, where);
  n->dtype = t;
  n->shape = shape;
  return true;
}

static bool parse_init(Loader *L, const Scope *s, const cJSON *j, IrInit *out, const char *where) {
  if (!cJSON_IsString(j))
    return diag_error(L->d, "%s: init: must be a string such as \"normal(0.02)\", \"zeros\", "
                      "\"ones\" or \"copy(NAME)\"", where);
  const char *v = j->valuestring;
  size_t len = strlen(v);
  if (strcmp(v, "zeros") == 0) {
    out->kind = IR_INIT_ZEROS;
  } else if (strcmp(v, "ones") == 0) {
    out->kind = IR_INIT_ONES;
  } else if (len > 8 && strncmp(v, "normal(", 7) == 0 && v[len - 1] == ')') {
    char *arg = arena_printf(&L->g->arena, "%.*s", (int)(len - 8), v + 7);
    char *src = subst(L, s, arg);
    if (!src || !eval_in_scope(L, s, src, &out->std)) return diag_prefix(L->d, "%s: init: ", where);
    if (!(out->std >= 0)) return diag_error(L->d, "%s: init: std %g must be >= 0", where, out->std);
    out->kind = IR_INIT_NORMAL;
  } else if (len > 6 && strncmp(v, "copy(", 5) == 0 && v[len - 1] == ')') {
    char *arg = arena_printf(&L->g->arena, "%.*s", (int)(len - 6), v + 5);
    out->copy_of = subst(L, s, arg);
    if (!out->copy_of) return diag_prefix(L->d, "%s: init: ", where);
    out->kind = IR_INIT_COPY;
  } else {
    return diag_error(L->d, "%s: init: \"%s\" is not one of normal(STD), zeros, ones, copy(NAME)",
                      where, v);
  }
  return true;
}

static bool add_param(Loader *L, const Scope *s, const cJSON *j, const char *list, int index) {
  const char *where = where_str(L, s, list, index);
  static const char *const keys[] = {"name", "shape", "init", "doc", NULL};
  if (!cJSON_IsObject(j)) return diag_error(L->d, "%s: must be an object", where);
  if (!check_keys(L, j, where, keys)) return false;
  const char *name = get_name(L, s, j, "name", where);
  if (!name || !check_new_name(L, name, where)) return false;
  IrShape shape;
  cJSON *sh = cJSON_GetObjectItemCaseSensitive(j, "shape");
  if (!sh) return diag_error(L->d, "%s \"%s\": missing \"shape\"", where, name);
  if (!eval_shape(L, s, sh, &shape, where)) return false;
  IrInit init = {0};
  cJSON *ij = cJSON_GetObjectItemCaseSensitive(j, "init");
  if (!ij) return diag_error(L->d, "%s \"%s\": missing \"init\"", where, name);
  if (!parse_init(L, s, ij, &init, where)) return false;
  IrNode *n = ir_graph_add(L->g, IR_OP_PARAM, name, where);
  n->shape = shape;
  n->init = init;
  return true;
}

static bool set_attr(Loader *L, const Scope *s, IrNode *n, const cJSON *j, const char *where) {
  int idx = ir_attr_index(n->op, j->string);
  const IrOpInfo *op = &ir_ops[n->op];
  if (idx < 0) {
    char list[256] = "";
    for (int i = 0; op->attrs[i].name; i++)
      snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "",
               op->attrs[i].name);
    return diag_error(L->d, "%s \"%s\": %s has no attribute \"%s\" (it has: %s)", where, n->name,
                      op->name, j->string, list[0] ? list : "none");
  }
  IrAttr *a = &n->attr[idx];
  a->set = true;
  bool ok = true;
  switch (op->attrs[idx].kind) {
  case IR_ATTR_INT: ok = eval_whole(L, s, j, &a->i); break;
  case IR_ATTR_FLOAT: ok = eval_number(L, s, j, &a->f); break;
  case IR_ATTR_BOOL:
    if (!cJSON_IsBool(j)) ok = diag_error(L->d, "must be true or false, not %s", rt_json_kind(j));
    else a->i = cJSON_IsTrue(j);
    break;
  case IR_ATTR_DTYPE: {
    DType t;
    if (!cJSON_IsString(j) || !dt_parse(j->valuestring, &t) ||
        (t != DT_F32 && t != DT_I32 && t != DT_I64))
      ok = diag_error(L->d, "must be \"f32\", \"i32\" or \"i64\"");
    else a->i = t;
    break;
  }
  case IR_ATTR_INTS: {
    if (!cJSON_IsArray(j)) {
      ok = diag_error(L->d, "must be an array, not %s", rt_json_kind(j));
      break;
    }
    if (cJSON_GetArraySize(j) > IR_MAX_RANK) {
      ok = diag_error(L->d, "has more than %d entries", IR_MAX_RANK);
      break;
    }
    a->n = 0;
    for (cJSON *c = j->child; c && ok; c = c->next) {
      ok = eval_whole(L, s, c, &a->ints[a->n]);
      if (!ok) diag_prefix(L->d, "[%d]: ", a->n);
      a->n++;
    }
    break;
  }
  }
  if (!ok) return diag_prefix(L->d, "%s \"%s\": %s: %s: ", where, n->name, op->name, j->string);
  return true;
}

static bool add_op_node(Loader *L, const Scope *s, const cJSON *j, const char *where) {
  static const char *const keys[] = {"op", "in", "out", "attrs", "doc", NULL};
  if (!check_keys(L, j, where, keys)) return false;
  cJSON *opj = cJSON_GetObjectItemCaseSensitive(j, "op");
  if (!cJSON_IsString(opj)) return diag_error(L->d, "%s: \"op\" must be a string", where);
  IrOpKind op;
  if (!ir_op_lookup(opj->valuestring, &op) || op == IR_OP_INPUT || op == IR_OP_PARAM)
    return diag_error(L->d, "%s: unknown op \"%s\" (see `kiln ops`)", where, opj->valuestring);
  cJSON *outj = cJSON_GetObjectItemCaseSensitive(j, "out");
  if (cJSON_IsArray(outj)) {
    if (cJSON_GetArraySize(outj) != 1)
      return diag_error(L->d, "%s: %s produces one output; \"out\" lists %d", where,
                        opj->valuestring, cJSON_GetArraySize(outj));
    outj = outj->child;
  }
  if (!cJSON_IsString(outj) || !outj->valuestring[0])
    return diag_error(L->d, "%s: \"out\" must name the tensor the node produces", where);
  const char *name = subst(L, s, outj->valuestring);
  if (!name) return diag_prefix(L->d, "%s: out: ", where);
  if (!check_new_name(L, name, where)) return false;
  IrNode *n = ir_graph_add(L->g, op, name, where);
  const IrOpInfo *info = &ir_ops[op];

  cJSON *inj = cJSON_GetObjectItemCaseSensitive(j, "in");
  if (inj && cJSON_IsString(inj)) {
    n->n_in = 1;
  } else if (!inj || cJSON_IsArray(inj)) {
    n->n_in = inj ? cJSON_GetArraySize(inj) : 0;
  } else {
    return diag_error(L->d, "%s \"%s\": \"in\" must be an array of tensor names", where, name);
  }
  if (n->n_in < info->min_in || (info->max_in >= 0 && n->n_in > info->max_in)) {
    if (info->max_in == info->min_in)
      return diag_error(L->d, "%s \"%s\": %s takes %d input%s, got %d", where, name, info->name,
                        info->min_in, info->min_in == 1 ? "" : "s", n->n_in);
    return diag_error(L->d, "%s \"%s\": %s takes %d%s inputs, got %d", where, name, info->name,
                      info->min_in, info->max_in < 0 ? " or more" : "", n->n_in);
  }
  GROW(L->pending, L->n_pending, L->cap_pending);
  Pending *p = &L->pending[L->n_pending++];
  p->node = n;
  p->names = arena_alloc(&L->g->arena, (size_t)(n->n_in + 1) * sizeof *p->names);
  n->in = arena_alloc(&L->g->arena, (size_t)(n->n_in + 1) * sizeof *n->in);
  const cJSON *c = cJSON_IsString(inj) ? inj : inj ? inj->child : NULL;
  for (int i = 0; i < n->n_in; i++, c = c->next) {
    if (!cJSON_IsString(c))
      return diag_error(L->d, "%s \"%s\": in[%d] must be a tensor name string", where, name, i);
    p->names[i] = subst(L, s, c->valuestring);
    if (!p->names[i]) return diag_prefix(L->d, "%s \"%s\": in[%d]: ", where, name, i);
  }

  cJSON *attrs = cJSON_GetObjectItemCaseSensitive(j, "attrs");
  if (attrs) {
    if (!cJSON_IsObject(attrs))
      return diag_error(L->d, "%s \"%s\": \"attrs\" must be an object", where, name);
    for (cJSON *a = attrs->child; a; a = a->next)
      if (!set_attr(L, s, n, a, where)) return false;
  }
  for (int i = 0; info->attrs[i].name; i++)
    if (info->attrs[i].required && !n->attr[i].set)
      return diag_error(L->d, "%s \"%s\": %s needs attribute \"%s\"", where, name, info->name,
                        info->attrs[i].name);
  return true;
}

static bool expand_nodes(Loader *L, const Scope *s, const cJSON *list, const char *list_name);

// The "repeat" and "index" of a block call or an output group, in scope s: how many times
// (1 without repeat) and the loop variable (NULL without either; "i" unless index names it).
static bool loop_of(Loader *L, const Scope *s, const cJSON *j, const char *where, int64_t *count,
                    const char **var) {
  *count = 1;
  cJSON *rep = cJSON_GetObjectItemCaseSensitive(j, "repeat");
  if (rep) {
    if (!eval_whole(L, s, rep, count)) return diag_prefix(L->d, "%s: repeat: ", where);
    if (*count < 0 || *count > 100000)
      return diag_error(L->d, "%s: repeat: %lld is outside [0, 100000]", where, (long long)*count);
  }
  *var = rep ? "i" : NULL;
  cJSON *idx = cJSON_GetObjectItemCaseSensitive(j, "index");
  if (idx) {
    if (!cJSON_IsString(idx) || !idx->valuestring[0])
      return diag_error(L->d, "%s: index: must be a variable name", where);
    *var = idx->valuestring;
  }
  return true;
}

static bool call_block(Loader *L, const Scope *s, const cJSON *j, const char *where) {
  static const char *const keys[] = {"block", "args", "repeat", "index", "doc", NULL};
  if (!check_keys(L, j, where, keys)) return false;
  cJSON *bj = cJSON_GetObjectItemCaseSensitive(j, "block");
  if (!cJSON_IsString(bj)) return diag_error(L->d, "%s: \"block\" must be a block name", where);
  const Block *b = NULL;
  for (int i = 0; i < L->n_blocks; i++)
    if (strcmp(L->blocks[i].name, bj->valuestring) == 0) b = &L->blocks[i];
  if (!b) return diag_error(L->d, "%s: unknown block \"%s\"", where, bj->valuestring);
  if (L->block_depth >= MAX_BLOCK_DEPTH)  // named by its definition: `where` is 32 calls long
    return diag_error(L->d, "%s: blocks.%s: blocks nested deeper than %d (a block calls itself?)",
                      b->file, b->name, MAX_BLOCK_DEPTH);
  static const char *const bkeys[] = {"args", "params", "nodes", "doc", NULL};
  char *bwhere = arena_printf(&L->g->arena, "%s: blocks.%s", b->file, b->name);
  if (!check_keys(L, b->def, bwhere, bkeys)) return false;

  int64_t count;
  const char *var;
  if (!loop_of(L, s, j, where, &count, &var)) return false;

  // Declared arguments.
  cJSON *decl = cJSON_GetObjectItemCaseSensitive(b->def, "args");
  int n_args = decl ? cJSON_GetArraySize(decl) : 0;
  if (decl && !cJSON_IsArray(decl))
    return diag_error(L->d, "%s.args: must be an array of names", bwhere);
  cJSON *given = cJSON_GetObjectItemCaseSensitive(j, "args");
  if (given && !cJSON_IsObject(given))
    return diag_error(L->d, "%s: args: must be an object {\"name\": value}", where);
  for (cJSON *g = given ? given->child : NULL; g; g = g->next) {
    bool known = false;
    for (cJSON *a = decl ? decl->child : NULL; a && !known; a = a->next)
      known = cJSON_IsString(a) && strcmp(a->valuestring, g->string) == 0;
    if (!known)
      return diag_error(L->d, "%s: args: block \"%s\" has no argument \"%s\"", where, b->name,
                        g->string);
  }

  for (int64_t it = 0; it < count; it++) {
    if (++L->block_instances > L->max_nodes || L->g->n_nodes > L->max_nodes)
      return diag_error(L->d, "%s: blocks expand to more than %lld instances or nodes (raise the limit "
                        "with --max-nodes N)", where, (long long)L->max_nodes);
    Scope caller = *s;
    if (var) {  // the index is visible in the call's arguments and inside the block
      caller.var = var;
      caller.var_value = (double)it;
    }
    Scope inner = {.n_args = n_args, .file = b->file, .var = var, .var_value = (double)it};
    inner.arg_names = arena_alloc(&L->g->arena, (size_t)(n_args + 1) * sizeof(char *));
    inner.arg_values = arena_alloc(&L->g->arena, (size_t)(n_args + 1) * sizeof(char *));
    int k = 0;
    for (cJSON *a = decl ? decl->child : NULL; a; a = a->next, k++) {
      if (!cJSON_IsString(a)) return diag_error(L->d, "%s.args[%d]: must be a name", bwhere, k);
      inner.arg_names[k] = a->valuestring;
      cJSON *v = given ? cJSON_GetObjectItemCaseSensitive(given, a->valuestring) : NULL;
      if (!v)
        return diag_error(L->d, "%s: block \"%s\" needs argument \"%s\"", where, b->name,
                          a->valuestring);
      if (cJSON_IsString(v)) {
        inner.arg_values[k] = subst(L, &caller, v->valuestring);
        if (!inner.arg_values[k]) return diag_prefix(L->d, "%s: args.%s: ", where, a->valuestring);
      } else if (cJSON_IsNumber(v)) {
        inner.arg_values[k] = arena_printf(&L->g->arena, "%.17g", v->valuedouble);
      } else {
        return diag_error(L->d, "%s: args.%s: must be a string or a number", where, a->valuestring);
      }
    }
    inner.path = arena_printf(&L->g->arena, "blocks.%s.", b->name);
    inner.via = var ? arena_printf(&L->g->arena, " (from %s %s=%lld)", where, var, (long long)it)
                    : arena_printf(&L->g->arena, " (from %s)", where);
    L->block_depth++;
    cJSON *params = cJSON_GetObjectItemCaseSensitive(b->def, "params");
    bool ok = true;
    if (params && !cJSON_IsArray(params))
      ok = diag_error(L->d, "%s.params: must be an array", bwhere);
    int pi = 0;
    for (cJSON *p = params ? params->child : NULL; p && ok; p = p->next)
      ok = add_param(L, &inner, p, "params", pi++);
    if (ok) ok = expand_nodes(L, &inner, cJSON_GetObjectItemCaseSensitive(b->def, "nodes"), "nodes");
    L->block_depth--;
    if (!ok) return false;
  }
  return true;
}

static bool expand_node(Loader *L, const Scope *s, const cJSON *j, const char *list_name,
                        int index) {
  const char *where = where_str(L, s, list_name, index);
  if (!cJSON_IsObject(j)) return diag_error(L->d, "%s: must be an object", where);
  if (cJSON_GetObjectItemCaseSensitive(j, "block")) return call_block(L, s, j, where);
  if (!cJSON_GetObjectItemCaseSensitive(j, "op"))
    return diag_error(L->d, "%s: a node needs \"op\" (or \"block\" to use a block)", where);
  return add_op_node(L, s, j, where);
}

static bool expand_nodes(Loader *L, const Scope *s, const cJSON *list, const char *list_name) {
  if (!list) return true;
  if (!cJSON_IsArray(list)) return diag_error(L->d, "%s: %s%s: must be an array", s->file, s->path, list_name);
  int i = 0;
  for (const cJSON *c = list->child; c; c = c->next, i++)
    if (!expand_node(L, s, c, list_name, i)) return false;
  return true;
}

// ---------------------------------------------------------------------------------------
// Putting it together.
static bool resolve_inputs(Loader *L) {
  for (int i = 0; i < L->n_pending; i++) {
    Pending *p = &L->pending[i];
    for (int k = 0; k < p->node->n_in; k++) {
      IrNode *src = ir_graph_find(L->g, p->names[k]);
      if (!src)
        return diag_error(L->d, "%s \"%s\": input \"%s\" is not defined (no input, param or node "
                          "has that name)", p->node->where, p->node->name, p->names[k]);
      p->node->in[k] = src;
    }
  }
  return true;
}

static bool add_outputs_and_losses(Loader *L) {
  IrGraph *g = L->g;
  g->outputs = arena_alloc(&g->arena, (size_t)(L->outputs.n + 1) * sizeof *g->outputs);
  for (int i = 0; i < L->outputs.n; i++) {
    Item *it = &L->outputs.v[i];
    if (!cJSON_IsString(it->item))
      return diag_error(L->d, "%s: outputs[%d]: must be a tensor name", it->file, it->index);
    IrNode *n = ir_graph_find(g, it->item->valuestring);
    if (!n)
      return diag_error(L->d, "%s: outputs[%d]: \"%s\" is not defined", it->file, it->index,
                        it->item->valuestring);
    for (int k = 0; k < g->n_outputs; k++)
      if (g->outputs[k] == n)
        return diag_error(L->d, "%s: outputs[%d]: \"%s\" is listed twice", it->file, it->index,
                          n->name);
    g->outputs[g->n_outputs++] = n;
  }
  g->losses = arena_alloc(&g->arena, (size_t)(L->losses.n + 1) * sizeof *g->losses);
  for (int i = 0; i < L->losses.n; i++) {
    Item *it = &L->losses.v[i];
    if (!cJSON_IsString(it->item))
      return diag_error(L->d, "%s: losses.%s: must be a tensor name", it->file, it->item->string);
    IrNode *n = ir_graph_find(g, it->item->valuestring);
    if (!n)
      return diag_error(L->d, "%s: losses.%s: \"%s\" is not defined", it->file, it->item->string,
                        it->item->valuestring);
    for (int k = 0; k < g->n_losses; k++)
      if (strcmp(g->losses[k].name, it->item->string) == 0)
        return diag_error(L->d, "%s: losses.%s: defined twice", it->file, it->item->string);
    g->losses[g->n_losses++] = (IrLoss){arena_strdup(&g->arena, it->item->string), n};
  }
  return true;
}

// One output_groups entry's outputs, for each value of its index: reshapes of the named
// tensors to their own shape (no copy on the JIT), under the entry's output names.
static bool expand_group(Loader *L, const Item *it, IrNode ***outs, int *n, int *cap) {
  static const char *const keys[] = {"group", "outputs", "repeat", "index", "doc", NULL};
  const char *where = arena_printf(&L->g->arena, "%s: output_groups[%d]", it->file, it->index);
  int64_t count;
  cJSON *outputs = cJSON_GetObjectItemCaseSensitive(it->item, "outputs");
  Scope s = {.file = it->file, .path = "", .via = ""};
  if (!check_keys(L, it->item, where, keys) || !loop_of(L, &s, it->item, where, &count, &s.var)) return false;
  if (!cJSON_IsObject(outputs))
    return diag_error(L->d, "%s: outputs: must be an object {\"output name\": \"tensor\"}", where);
  for (int64_t i = 0; i < count; i++) {
    s.var_value = (double)i;
    for (cJSON *c = outputs->child; c; c = c->next) {
      if (!cJSON_IsString(c)) return diag_error(L->d, "%s: outputs.%s: must be a tensor name", where, c->string);
      const char *name = subst(L, &s, c->string), *tensor = name ? subst(L, &s, c->valuestring) : NULL;
      if (!tensor) return diag_prefix(L->d, "%s: outputs.%s: ", where, c->string);
      IrNode *x = ir_graph_find(L->g, tensor);
      if (!x) return diag_error(L->d, "%s: outputs.%s: \"%s\" is not defined", where, c->string, tensor);
      if (!check_new_name(L, name, where)) return false;
      IrNode *y = ir_graph_add(L->g, IR_OP_RESHAPE, name, where);
      y->n_in = 1;
      y->in = arena_alloc(&L->g->arena, 2 * sizeof *y->in);
      y->in[0] = x;
      int a = ir_attr_index(IR_OP_RESHAPE, "shape");
      y->attr[a].set = true;
      y->attr[a].n = x->shape.rank;
      for (int k = 0; k < x->shape.rank; k++) y->attr[a].ints[k] = x->shape.dim[k];
      GROW(*outs, *n, *cap);
      (*outs)[(*n)++] = y;
    }
  }
  return true;
}

// Adds the requested output groups' outputs (after the graph's shapes are known).
static bool add_output_groups(Loader *L, const char *const *want, int n_want) {
  if (n_want == 0) return true;
  IrGraph *g = L->g;
  int n = 0, cap = 0;
  IrNode **outs = NULL;
  bool ok = true;
  for (int w = 0; w < n_want && ok; w++) {
    bool found = false;
    for (int i = 0; i < L->groups.n && ok; i++) {
      const Item *it = &L->groups.v[i];
      cJSON *name = cJSON_IsObject(it->item) ? cJSON_GetObjectItemCaseSensitive(it->item, "group") : NULL;
      if (!cJSON_IsString(name))
        ok = diag_error(L->d, "%s: output_groups[%d]: needs \"group\", a name", it->file, it->index);
      else if (strcmp(name->valuestring, want[w]) == 0)
        found = true, ok = expand_group(L, it, &outs, &n, &cap);
    }
    if (ok && !found) {
      char list[256] = "";
      for (int i = 0; i < L->groups.n; i++) {
        cJSON *name = cJSON_GetObjectItemCaseSensitive(L->groups.v[i].item, "group");
        if (!strstr(list, name->valuestring))
          snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", list[0] ? ", " : "", name->valuestring);
      }
      ok = diag_error(L->d, "%s: the model has no output group \"%s\" (%s%s)", g->file, want[w],
                      list[0] ? "it has: " : "it declares none", list);
    }
  }
  if (ok) {
    IrNode **all = arena_alloc(&g->arena, (size_t)(g->n_outputs + n + 1) * sizeof *all);
    memcpy(all, g->outputs, (size_t)g->n_outputs * sizeof *all);
    memcpy(all + g->n_outputs, outs, (size_t)n * sizeof *all);
    g->outputs = all;
    g->n_outputs += n;
  }
  free(outs);
  return ok && ir_graph_finish(g, L->d);
}

static bool apply_sets(Loader *L, const FeSet *sets, int n_sets) {
  for (int i = 0; i < n_sets; i++) {
    ConfigEntry *e = config_find(L, sets[i].name, strlen(sets[i].name));
    if (!e) {
      char list[512] = "";
      for (int k = 0; k < L->n_config; k++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", k ? ", " : "",
                 L->config[k].name);
      return diag_error(L->d, "--set %s: the model has no config entry \"%s\" (it has: %s)",
                        sets[i].name, sets[i].name, list);
    }
    double v;
    if (!expr_eval(sets[i].value, lookup_config, L, &v, L->d))
      return diag_prefix(L->d, "--set %s: ", sets[i].name);
    long long w;
    e->v = v;
    e->is_int = expr_whole(v, &w);
    e->done = true;
    e->file = "--set";
  }
  // Entries evaluated above (for a --set value) saw the config before later overrides;
  // forget them so that every dependant sees the final values.
  for (int i = 0; i < L->n_config; i++)
    if (strcmp(L->config[i].file, "--set") != 0) L->config[i].done = false;
  return true;
}

static bool build(Loader *L, const char *path, const FeSet *sets, int n_sets, const FeLimits *limits) {
  if (!load_file(L, path) || !apply_sets(L, sets, n_sets)) return false;
  IrGraph *g = L->g;
  g->config = arena_alloc(&g->arena, (size_t)(L->n_config + 1) * sizeof *g->config);
  for (int i = 0; i < L->n_config; i++) {
    double v;
    if (!config_value(L, &L->config[i], &v)) return false;
    g->config[g->n_config++] =
        (IrConfigEntry){arena_strdup(&g->arena, L->config[i].name), v, L->config[i].is_int};
  }
  for (int i = 0; i < L->inputs.n; i++) {
    Scope s = {.file = L->inputs.v[i].file, .path = "", .via = ""};
    if (!add_input(L, &s, L->inputs.v[i].item, L->inputs.v[i].index)) return false;
  }
  for (int i = 0; i < L->params.n; i++) {
    Scope s = {.file = L->params.v[i].file, .path = "", .via = ""};
    if (!add_param(L, &s, L->params.v[i].item, "params", L->params.v[i].index)) return false;
  }
  for (int i = 0; i < L->nodes.n; i++) {
    Scope s = {.file = L->nodes.v[i].file, .path = "", .via = ""};
    if (!expand_node(L, &s, L->nodes.v[i].item, "nodes", L->nodes.v[i].index)) return false;
  }
  if (g->n_nodes == 0) return diag_error(L->d, "%s: the model declares no tensors", path);
  return resolve_inputs(L) && add_outputs_and_losses(L) && ir_graph_finish(g, L->d) &&
         add_output_groups(L, limits->output_groups, limits->n_output_groups) && ir_verify(g, L->d);
}

bool fe_load_model(const char *path, const FeSet *sets, int n_sets, IrGraph *g, Diag *d) {
  return fe_load_model_limited(path, sets, n_sets, &(FeLimits){0}, g, d);
}

bool fe_load_model_limited(const char *path, const FeSet *sets, int n_sets, const FeLimits *limits,
                           IrGraph *g, Diag *d) {
  ir_graph_init(g, path);
  Loader L = {.g = g, .d = d,
              .max_nodes = limits->max_nodes > 0 ? limits->max_nodes : FE_DEFAULT_MAX_NODES,
              .max_config = limits->max_config > 0 ? limits->max_config : FE_DEFAULT_MAX_CONFIG};
  bool ok = build(&L, path, sets, n_sets, limits);
  for (int i = 0; i < L.n_roots; i++) cJSON_Delete(L.roots[i]);
  free(L.config);
  free(L.blocks);
  free(L.inputs.v);
  free(L.params.v);
  free(L.nodes.v);
  free(L.outputs.v);
  free(L.losses.v);
  free(L.groups.v);
  free(L.pending);
  if (!ok) ir_graph_free(g);
  return ok;
}

bool fe_parse_set(const char *arg, FeSet *out) {
  const char *eq = strchr(arg, '=');
  size_t len = eq ? (size_t)(eq - arg) : 0;
  if (!eq || len == 0 || len >= sizeof out->name || !eq[1]) return false;
  memcpy(out->name, arg, len);
  out->name[len] = 0;
  out->value = eq + 1;
  return true;
}
