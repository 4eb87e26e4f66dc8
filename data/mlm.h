// The pre-training objectives' on-the-fly data: masked language modelling (BERT's 15% /
// 80-10-10 rule over text tokens, never [CLS]/[SEP]/[PAD] and never regions) and
// sentence-image matching (with probability 1/2 the second caption is replaced by another
// example's, label 0). Every draw is a function of (seed, step, position) alone, through
// the IR's counter-based mix, so a resumed training run sees the same batches.
//
// Rows are "[CLS] caption_a [SEP] caption_b [SEP] [PAD]..." (token types 0 then 1).
#ifndef KILN_MLM_H
#define KILN_MLM_H

#include <stdbool.h>
#include <stdint.h>

#include "ir/ir.h"
#include "runtime/safetensors.h"

#define MLM_CONFIG_TENSOR "mlm_config"  // i64 [6]: cls, sep, pad, mask, unk, vocab size

typedef struct MlmConfig {
  int64_t cls, sep, pad, mask, unk;
  int64_t vocab;         // random replacements are drawn from [0, vocab) minus the specials
  int64_t ignore_index;  // the label of every position not masked (-100, cross_entropy's)
  double p_select;       // 0.15
  double p_mask, p_random;  // of the selected: 0.8 become [MASK], 0.1 a random token
  double p_mismatch;     // 0.5
} MlmConfig;

// BERT's rates around the given special ids.
MlmConfig mlm_config(int64_t cls, int64_t sep, int64_t pad, int64_t mask, int64_t unk, int64_t vocab);

// MLM on one batch of rows, in place: ids [batch, len] become the model's input, labels
// [batch, len] the original token where one was selected, ignore_index elsewhere. Row b
// draws as row first + b of the step's batch (first > 0: a later process's share of it).
void mlm_mask_batch(const MlmConfig *c, uint64_t seed, int64_t step, int64_t first, int64_t *ids,
                    int64_t *labels, int64_t batch, int64_t len);

// Sentence-image matching on one batch, in place: each row whose two captions are both
// present gets, with probability p_mismatch, caption_b of another row of pool [n_pool, len]
// (a different caption; truncated to fit), token types and attention mask rebuilt, and
// si_labels 0; other rows keep theirs (si_labels 1 for a generator's matched pairs).
void mlm_mismatch_batch(const MlmConfig *c, uint64_t seed, int64_t step, int64_t first, int64_t *ids,
                        int64_t *token_type,
                        float *attention_mask, int64_t *si_labels, int64_t batch, int64_t len,
                        const int64_t *pool, int64_t n_pool);

// --- for kiln train: the whole per-step treatment of a pre-training batch ------------------

typedef struct Mlm {
  MlmConfig config;
  int64_t *pool;  // [n_pool, len] the data file's input_ids (clean captions)
  int64_t n_pool, len;
} Mlm;

// From a data file written by `kiln data synth` (its mlm_config tensor and input_ids).
// Returns false with *present = false when the file has no mlm_config (not pre-training
// data; not an error), or with a message when it is malformed.
bool mlm_load(const StFile *data, Mlm *m, bool *present, Diag *d);
void mlm_free(Mlm *m);

// Mismatch then mask the batch bound in value[] (node id -> buffer of one batch):
// input_ids, token_type_ids, attention_mask, labels, sentence_image_labels, which must be
// inputs of g with the pre-training model's dtypes (i64, i64, f32, i64, i64); the bound
// rows are rows first .. of the step's batch. A program that does not read the input
// sentence_image_labels (MLM alone: models/bert-pretrain.json, or the pre-training files
// trained with --loss masked_lm_loss) gets its batch masked only, every pair matched.
bool mlm_apply(const Mlm *m, const IrGraph *g, void *const *value, uint64_t seed, int64_t step, int64_t first,
               Diag *d);

#endif
