// A synthetic grounded vision-language world (`kiln data synth`): scenes of a few objects
// (shape, colour, size, position), each one region whose features are a fixed random
// projection of its attributes plus noise; captions, questions with answers and
// true/false statements about scene pairs, multiple-choice answers and grounded captions
// from a small grammar. Writes BERT-format vocab.txt and safetensors data sets for the
// pre-training, VQA, NLVR2, VCR and Flickr30K model files.
// Everything is a function of the seed (same seed, same bytes).
#ifndef KILN_SYNTH_H
#define KILN_SYNTH_H

#include <stdbool.h>
#include <stdint.h>

#include "runtime/diag.h"

typedef struct SynthOptions {
  uint64_t seed;
  int n_train, n_val, n_test;  // examples per split and task
  int visual_dim;              // region feature size (default 32)
  int regions;                 // region slots per example (NLVR2: half per image; default 8)
  int text_len;                // tokens per row incl. [CLS]/[SEP]/[PAD] (default 24)
} SynthOptions;

SynthOptions synth_defaults(void);

// The vocabulary (vocab.txt order, ids = positions) and the VQA answers (label order).
int synth_vocab(const char *const **tokens);
int synth_answers(const char *const **answers);

// Writes into dir (created if missing): vocab.txt, answers.txt, config.txt (the --set
// values the model files need) and TASK-SPLIT.safetensors for TASK in pretrain,
// pretrain-static, vqa, nlvr2, vcr, flickr, and X-mlm and X-mlm-static for X in vqa,
// nlvr2, vcr, flickr (the task's text and images in the pre-training layout, for
// task-specific MLM), and SPLIT in train, val, test. Fails with a message naming
// the file, or the option that cannot work (e.g. text_len too short for the grammar).
bool synth_write(const char *dir, const SynthOptions *o, Diag *d);

#endif
