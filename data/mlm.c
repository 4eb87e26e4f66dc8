// Pre-training batches (see mlm.h): BERT's masking rule and sentence-image mismatches, each
// draw keyed by (seed, stream, step) and counted by position.
#include "data/mlm.h"

#include <stdlib.h>
#include <string.h>

enum { STREAM_MLM = 3, STREAM_MISMATCH = 4 };  // cmd_train uses 1 (shuffle) and 2 (dropout)

static uint64_t step_key(uint64_t seed, uint64_t stream, int64_t step) {
  return ir_rng_key_of(ir_rng_key_of(seed, stream), (uint64_t)step);
}

MlmConfig mlm_config(int64_t cls, int64_t sep, int64_t pad, int64_t mask, int64_t unk, int64_t vocab) {
  return (MlmConfig){.cls = cls, .sep = sep, .pad = pad, .mask = mask, .unk = unk, .vocab = vocab,
                     .ignore_index = -100, .p_select = 0.15, .p_mask = 0.8, .p_random = 0.1,
                     .p_mismatch = 0.5};
}

static bool is_special(const MlmConfig *c, int64_t id) {
  return id == c->cls || id == c->sep || id == c->pad || id == c->mask || id == c->unk;
}

void mlm_mask_batch(const MlmConfig *c, uint64_t seed, int64_t step, int64_t first, int64_t *ids,
                    int64_t *labels, int64_t batch, int64_t len) {
  uint64_t key = step_key(seed, STREAM_MLM, step);
  for (int64_t i = 0; i < batch * len; i++) {
    int64_t id = ids[i];
    labels[i] = c->ignore_index;
    if (id == c->cls || id == c->sep || id == c->pad) continue;
    uint64_t ctr = (uint64_t)(first * len + i) * 8;
    if (ir_rng_uniform(key, ctr) >= c->p_select) continue;
    labels[i] = id;
    double u = ir_rng_uniform(key, ctr + 1);
    if (u < c->p_mask) {
      ids[i] = c->mask;
    } else if (u < c->p_mask + c->p_random) {
      int64_t r = id;  // a non-special token; a few redraws, then keep the original
      for (uint64_t k = 0; k < 6; k++) {
        int64_t t = (int64_t)(ir_rng_uniform(key, ctr + 2 + k) * (double)c->vocab);
        if (t < c->vocab && !is_special(c, t)) {
          r = t;
          break;
        }
      }
      ids[i] = r;
    }
  }
}

// The position of the first `id` in row[from, len), or -1.
static int64_t find_id(const int64_t *row, int64_t from, int64_t len, int64_t id) {
  for (int64_t t = from; t < len; t++)
    if (row[t] == id) return t;
  return -1;
}

void mlm_mismatch_batch(const MlmConfig *c, uint64_t seed, int64_t step, int64_t first, int64_t *ids,
                        int64_t *token_type,
                        float *attention_mask, int64_t *si_labels, int64_t batch, int64_t len,
                        const int64_t *pool, int64_t n_pool) {
  uint64_t key = step_key(seed, STREAM_MISMATCH, step);
  for (int64_t b = 0; b < batch; b++) {
    int64_t *row = ids + b * len;
    int64_t s1 = find_id(row, 0, len, c->sep);
    int64_t s2 = s1 < 0 ? -1 : find_id(row, s1 + 1, len, c->sep);
    uint64_t ctr = (uint64_t)(first + b) * 16;
    if (s2 < 0 || ir_rng_uniform(key, ctr) >= c->p_mismatch) continue;
    // Another pool row with a second caption that differs from this row's.
    const int64_t *other = NULL;
    int64_t o1 = 0, o2 = 0;
    for (uint64_t k = 1; k < 16 && n_pool > 0 && !other; k++) {
      const int64_t *cand = pool + (int64_t)(ir_rng_uniform(key, ctr + k) * (double)n_pool) * len;
      int64_t c1 = find_id(cand, 0, len, c->sep);
      int64_t c2 = c1 < 0 ? -1 : find_id(cand, c1 + 1, len, c->sep);
      if (c2 < 0) continue;
      bool same = c2 - c1 == s2 - s1 && !memcmp(cand + c1 + 1, row + s1 + 1, (size_t)(c2 - c1 - 1) * sizeof *row);
      if (!same) {
        other = cand;
        o1 = c1;
        o2 = c2;
      }
    }
    if (!other) continue;  // no different caption found: the row stays a matched pair
    int64_t n_b = o2 - o1 - 1;
    if (n_b > len - s1 - 2) n_b = len - s1 - 2;
    int64_t t = s1 + 1;
    memcpy(row + t, other + o1 + 1, (size_t)n_b * sizeof *row);
    t += n_b;
    row[t++] = c->sep;
    for (int64_t k = 0; k < len; k++) {
      if (k >= t) row[k] = c->pad;
      if (token_type) token_type[b * len + k] = k > s1 && k < t;
      if (attention_mask) attention_mask[b * len + k] = k < t;
    }
    si_labels[b] = 0;
  }
}

// --- kiln train's per-step call -------------------------------------------------------------

bool mlm_load(const StFile *data, Mlm *m, bool *present, Diag *d) {
  memset(m, 0, sizeof *m);
  *present = false;
  const StTensor *cfg = st_find(data, MLM_CONFIG_TENSOR);
  if (!cfg) return false;
  *present = true;
  if (cfg->rank != 1 || cfg->shape[0] != 6 || dt_is_float(cfg->dtype))
    return diag_error(d, "%s: tensor \"%s\" must be an integer vector of 6 (cls, sep, pad, mask, unk, vocab)",
                      data->path, MLM_CONFIG_TENSOR);
  int64_t v[6];
  for (int k = 0; k < 6; k++) v[k] = (int64_t)dt_load(cfg->dtype, cfg->data, (size_t)k);
  if (v[5] < 1)
    return diag_error(d, "%s: tensor \"%s\": vocab size %lld", data->path, MLM_CONFIG_TENSOR, (long long)v[5]);
  m->config = mlm_config(v[0], v[1], v[2], v[3], v[4], v[5]);
  const StTensor *ids = st_find(data, "input_ids");
  if (!ids || ids->rank != 2)
    return diag_error(d, "%s: pre-training data needs \"input_ids\" of shape (examples, text_len)", data->path);
  m->n_pool = ids->shape[0];
  m->len = ids->shape[1];
  m->pool = malloc((size_t)(m->n_pool * m->len + 1) * sizeof *m->pool);
  if (!m->pool) return diag_error(d, "%s: out of memory", data->path);
  return dt_convert(ids->dtype, ids->data, DT_I64, m->pool, (size_t)(m->n_pool * m->len), "input_ids", d) ||
         diag_prefix(d, "%s: ", data->path);
}

void mlm_free(Mlm *m) {
  free(m->pool);
  memset(m, 0, sizeof *m);
}

static void *input_buffer(const IrGraph *g, void *const *value, const char *name, DType dt, int rank,
                          int64_t batch, int64_t len, Diag *d) {
  const IrNode *n = ir_graph_find(g, name);
  bool ok = n && n->op == IR_OP_INPUT && n->dtype == dt && n->shape.rank == rank &&
            n->shape.dim[0] == batch && (rank == 1 || n->shape.dim[1] == len) && value[n->id];
  if (!ok)
    diag_error(d, "%s: pre-training batches need the input \"%s\" as %s[batch%s]", g->file, name, dt_name(dt),
               rank == 2 ? ", text_len" : "");
  return ok ? value[n->id] : NULL;
}

bool mlm_apply(const Mlm *m, const IrGraph *g, void *const *value, uint64_t seed, int64_t step, int64_t first,
               Diag *d) {
  const IrNode *ids_node = ir_graph_find(g, "input_ids");
  if (!ids_node || ids_node->shape.rank != 2)
    return diag_error(d, "%s: pre-training batches need the input \"input_ids\" (batch, text_len)", g->file);
  int64_t batch = ids_node->shape.dim[0], len = ids_node->shape.dim[1];
  if (len != m->len)
    return diag_error(d, "%s: text_len %lld, but the data's rows have %lld tokens", g->file, (long long)len,
                      (long long)m->len);
  int64_t *ids = input_buffer(g, value, "input_ids", DT_I64, 2, batch, len, d);
  int64_t *tt = input_buffer(g, value, "token_type_ids", DT_I64, 2, batch, len, d);
  float *am = input_buffer(g, value, "attention_mask", DT_F32, 2, batch, len, d);
  int64_t *labels = input_buffer(g, value, "labels", DT_I64, 2, batch, len, d);
  if (!ids || !tt || !am || !labels) return false;
  const IrNode *si_node = ir_graph_find(g, "sentence_image_labels");
  if (si_node && si_node->op == IR_OP_INPUT && value[si_node->id]) {  // else MLM alone, pairs matched
    int64_t *si = input_buffer(g, value, "sentence_image_labels", DT_I64, 1, batch, len, d);
    if (!si) return false;
    mlm_mismatch_batch(&m->config, seed, step, first, ids, tt, am, si, batch, len, m->pool, m->n_pool);
  }
  mlm_mask_batch(&m->config, seed, step, first, ids, labels, batch, len);
  return true;
}
