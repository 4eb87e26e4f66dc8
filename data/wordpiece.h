// WordPiece tokenizer, as BERT-uncased does it: a basic tokenizer (clean, lower-case, strip
// accents, split on whitespace and punctuation, CJK ideographs one token each) then greedy
// longest-match-first WordPiece over each word with `##` continuation pieces, [UNK] for a
// word that has no split or is longer than 100 characters. Vocabularies are BERT's
// vocab.txt: one token a line, id = line number (0-based).
#ifndef KILN_WORDPIECE_H
#define KILN_WORDPIECE_H

#include <stdbool.h>
#include <stddef.h>

#include "runtime/diag.h"

#define WP_MAX_WORD_CHARS 100  // longer words become [UNK] (BERT's max_input_chars_per_word)

typedef struct WpVocab {
  char **tokens;  // [n], tokens[id]
  int n;
  int *slots;     // open-addressing hash of ids (-1: empty), n_slots a power of two
  int n_slots;
  int unk, cls, sep, pad, mask;  // special token ids; -1 when absent ([UNK] never is)
} WpVocab;

// Loads a vocab.txt (trailing "\r\n" / "\n" stripped; a repeated token keeps its last id,
// as BERT's loader does). Fails, naming the file, when it cannot be read, is empty or has
// no [UNK].
bool wp_vocab_load(const char *path, WpVocab *v, Diag *d);
// The same from a list of tokens (copied); `what` names the source in messages.
bool wp_vocab_from_tokens(const char *const *tokens, int n, const char *what, WpVocab *v, Diag *d);
void wp_vocab_free(WpVocab *v);
// The id of the token (len bytes), or -1.
int wp_vocab_find(const WpVocab *v, const char *tok, size_t len);

// Tokenizes UTF-8 text (no [CLS]/[SEP] added). Writes the first min(count, cap) ids to ids
// (ids may be NULL when cap is 0) and returns the full count. Special tokens written as
// whole words ("[SEP]") are kept as one token. Invalid UTF-8 bytes are dropped.
int wp_tokenize(const WpVocab *v, const char *text, int *ids, int cap);

// The basic tokenizer alone: calls word(word, len, ctx) for every word it produces
// (normalised UTF-8, not NUL-terminated).
void wp_basic_split(const WpVocab *v, const char *text,
                    void (*word)(const char *w, size_t len, void *ctx), void *ctx);

#endif
