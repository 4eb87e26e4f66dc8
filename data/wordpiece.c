// WordPiece tokenizer (see wordpiece.h): vocab.txt loading and hashing, BERT-uncased's basic
// tokenizer over Unicode code points, and greedy longest-match-first WordPiece.
//
// Unicode coverage (no tables from a Unicode library): lower-casing of ASCII, Latin-1,
// Latin Extended-A, basic Greek and Cyrillic; accent stripping (NFD, then drop the
// combining marks) of Latin-1, Latin Extended-A, Greek tonos/dialytika, Cyrillic ё/й and
// the combining diacritics U+0300-U+036F; punctuation: ASCII (every non-alphanumeric
// printable, as BERT), Latin-1, General Punctuation, CJK and fullwidth punctuation;
// whitespace: ASCII and the Zs spaces; control and format characters are removed. Not
// covered: Latin Extended Additional (Vietnamese) accents, Hangul decomposition.
#include "data/wordpiece.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/files.h"

// --- vocabulary ------------------------------------------------------------------------

static uint64_t fnv1a(const char *s, size_t len) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
  return h;
}

int wp_vocab_find(const WpVocab *v, const char *tok, size_t len) {
  size_t mask = (size_t)v->n_slots - 1;
  for (size_t k = (size_t)fnv1a(tok, len) & mask;; k = (k + 1) & mask) {
    int id = v->slots[k];
    if (id < 0) return -1;
    if (strlen(v->tokens[id]) == len && memcmp(v->tokens[id], tok, len) == 0) return id;
  }
}

static int find_str(const WpVocab *v, const char *s) { return wp_vocab_find(v, s, strlen(s)); }

// Hashes tokens[0..n) (a repeated token keeps its last id) and finds the special tokens.
static bool vocab_index(WpVocab *v, const char *what, Diag *d) {
  v->n_slots = 16;
  while (v->n_slots < 2 * v->n) v->n_slots *= 2;
  v->slots = malloc((size_t)v->n_slots * sizeof *v->slots);
  if (!v->slots) return diag_error(d, "%s: out of memory", what);
  memset(v->slots, 0xff, (size_t)v->n_slots * sizeof *v->slots);
  size_t mask = (size_t)v->n_slots - 1;
  for (int id = 0; id < v->n; id++) {
    const char *t = v->tokens[id];
    size_t len = strlen(t);
    size_t k = (size_t)fnv1a(t, len) & mask;
    while (v->slots[k] >= 0 && strcmp(v->tokens[v->slots[k]], t) != 0) k = (k + 1) & mask;
    v->slots[k] = id;
  }
  v->unk = find_str(v, "[UNK]");
  v->cls = find_str(v, "[CLS]");
  v->sep = find_str(v, "[SEP]");
  v->pad = find_str(v, "[PAD]");
  v->mask = find_str(v, "[MASK]");
  if (v->unk < 0) return diag_error(d, "%s: the vocabulary has no [UNK] token", what);
  return true;
}

bool wp_vocab_from_tokens(const char *const *tokens, int n, const char *what, WpVocab *v, Diag *d) {
  memset(v, 0, sizeof *v);
  if (n <= 0) return diag_error(d, "%s: the vocabulary is empty", what);
  v->tokens = calloc((size_t)n, sizeof *v->tokens);
  if (!v->tokens) return diag_error(d, "%s: out of memory", what);
  v->n = n;
  for (int i = 0; i < n; i++)
    if (!(v->tokens[i] = strdup(tokens[i]))) return diag_error(d, "%s: out of memory", what);
  return vocab_index(v, what, d);
}

bool wp_vocab_load(const char *path, WpVocab *v, Diag *d) {
  memset(v, 0, sizeof *v);
  FILE *f = rt_open_read(path, d);  // a regular file: no FIFO, device or directory
  if (!f) return diag_prefix(d, "the vocabulary: ");
  int cap = 0;
  char *line = NULL;
  size_t line_cap = 0;
  ssize_t len;
  bool ok = true;
  while ((len = getline(&line, &line_cap, f)) >= 0) {
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
    if (memchr(line, 0, (size_t)len)) {
      ok = diag_error(d, "%s:%d: a NUL byte in a token (not a vocab.txt file?)", path, v->n + 1);
      break;
    }
    if (v->n == cap) {
      cap = cap ? 2 * cap : 1024;
      char **t = realloc(v->tokens, (size_t)cap * sizeof *t);
      if (!t) {
        ok = diag_error(d, "%s: out of memory", path);
        break;
      }
      v->tokens = t;
    }
    if (!(v->tokens[v->n] = strdup(line))) {
      ok = diag_error(d, "%s: out of memory", path);
      break;
    }
    v->n++;
  }
  if (ok && ferror(f)) ok = diag_error(d, "%s: read error", path);
  free(line);
  fclose(f);
  if (ok && v->n == 0) ok = diag_error(d, "%s: the vocabulary is empty", path);
  if (ok) ok = vocab_index(v, path, d);
  if (!ok) wp_vocab_free(v);  // a refused vocabulary leaves nothing to free
  return ok;
}

void wp_vocab_free(WpVocab *v) {
  for (int i = 0; i < v->n; i++) free(v->tokens[i]);
  free(v->tokens);
  free(v->slots);
  memset(v, 0, sizeof *v);
}

// --- Unicode -----------------------------------------------------------------------------

// Decodes one UTF-8 code point at s[*i] (advancing *i); returns -1 for an invalid byte
// (skipped one byte at a time).
static int32_t utf8_next(const unsigned char *s, size_t n, size_t *i) {
  unsigned c = s[*i];
  int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
  if (len == 0 || *i + (size_t)len > n) {
    (*i)++;
    return -1;
  }
  uint32_t cp = len == 1 ? c : len == 2 ? c & 0x1f : len == 3 ? c & 0x0f : c & 0x07;
  for (int k = 1; k < len; k++) {
    unsigned b = s[*i + (size_t)k];
    if ((b & 0xc0) != 0x80) {
      (*i)++;
      return -1;
    }
    cp = cp << 6 | (b & 0x3f);
  }
  static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < min_cp[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
    (*i)++;
    return -1;
  }
  *i += (size_t)len;
  return (int32_t)cp;
}

static size_t utf8_put(uint32_t cp, char *out) {
  if (cp < 0x80) {
    out[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    out[0] = (char)(0xc0 | cp >> 6);
    out[1] = (char)(0x80 | (cp & 0x3f));
    return 2;
  }
  if (cp < 0x10000) {
    out[0] = (char)(0xe0 | cp >> 12);
    out[1] = (char)(0x80 | (cp >> 6 & 0x3f));
    out[2] = (char)(0x80 | (cp & 0x3f));
    return 3;
  }
  out[0] = (char)(0xf0 | cp >> 18);
  out[1] = (char)(0x80 | (cp >> 12 & 0x3f));
  out[2] = (char)(0x80 | (cp >> 6 & 0x3f));
  out[3] = (char)(0x80 | (cp & 0x3f));
  return 4;
}

static bool is_space(uint32_t c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == 0xa0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200a) || c == 0x202f || c == 0x205f || c == 0x3000;
}

// Removed by BERT's _clean_text: NUL, U+FFFD and control (Cc) / format (Cf) characters.
static bool is_dropped(uint32_t c) {
  if (c == '\t' || c == '\n' || c == '\r') return false;
  return c < 0x20 || (c >= 0x7f && c <= 0x9f) || c == 0xfffd || c == 0xad ||
         (c >= 0x200b && c <= 0x200f) || (c >= 0x202a && c <= 0x202e) ||
         (c >= 0x2060 && c <= 0x2064) || c == 0xfeff;
}

static bool is_punct(uint32_t c) {
  if ((c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126))
    return true;
  return c == 0xa1 || c == 0xa7 || c == 0xab || c == 0xb6 || c == 0xb7 || c == 0xbb || c == 0xbf ||
         c == 0x37e || c == 0x387 || (c >= 0x55a && c <= 0x55f) || c == 0x589 ||
         (c >= 0x2010 && c <= 0x2027) || (c >= 0x2030 && c <= 0x205e) ||
         (c >= 0x3001 && c <= 0x3003) || (c >= 0x3008 && c <= 0x3011) ||
         (c >= 0x3014 && c <= 0x301f) || (c >= 0xff01 && c <= 0xff0f) ||
         (c >= 0xff1a && c <= 0xff20) || (c >= 0xff3b && c <= 0xff40) || (c >= 0xff5b && c <= 0xff65);
}

// The CJK Unified Ideographs blocks BERT splits into single characters.
static bool is_cjk(uint32_t c) {
  return (c >= 0x4e00 && c <= 0x9fff) || (c >= 0x3400 && c <= 0x4dbf) || (c >= 0x20000 && c <= 0x2a6df) ||
         (c >= 0x2a700 && c <= 0x2b73f) || (c >= 0x2b740 && c <= 0x2b81f) ||
         (c >= 0x2b820 && c <= 0x2ceaf) || (c >= 0xf900 && c <= 0xfaff) || (c >= 0x2f800 && c <= 0x2fa1f);
}

static uint32_t to_lower(uint32_t c) {
  if (c < 0x80) return c >= 'A' && c <= 'Z' ? c + 32 : c;
  if (c >= 0xc0 && c <= 0xde && c != 0xd7) return c + 32;
  if (c == 0x130) return 'i';  // İ: "i" + U+0307, whose dot the accent stripping drops
  if ((c >= 0x100 && c <= 0x137) || (c >= 0x14a && c <= 0x177)) return c | 1;
  if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17e)) return c & 1 ? c + 1 : c;
  if (c == 0x178) return 0xff;
  if ((c >= 0x391 && c <= 0x3a9 && c != 0x3a2)) return c + 32;
  if (c == 0x386) return 0x3ac;
  if (c >= 0x388 && c <= 0x38a) return c + 37;
  if (c == 0x38c) return 0x3cc;
  if (c == 0x38e || c == 0x38f) return c + 63;
  if (c >= 0x410 && c <= 0x42f) return c + 32;
  if (c >= 0x400 && c <= 0x40f) return c + 80;
  return c;
}

// The base letter of a (lower-case) letter with a canonical decomposition, 0 for a
// combining mark (dropped), else c itself.
static uint32_t strip_accent(uint32_t c) {
  static const char latin1[] = "aaaaaa-ceeeeiiii-nooooo--uuuuy-y";  // U+00E0..U+00FF
  static const char ext_a[] =                                          // U+0100..U+017F
      "aaaaaaccccccccdd--eeeeeeeeeegggggggghh--iiiiiiiii---jjkk-llllll----nnnnnn---oooooo--"
      "rrrrrrsssssssstttt--uuuuuuuuuuuuwwyyyzzzzzz-";
  _Static_assert(sizeof latin1 == 33 && sizeof ext_a == 129, "accent tables cover their blocks");
  if (c >= 0x300 && c <= 0x36f) return 0;
  if (c >= 0xe0 && c <= 0xff && latin1[c - 0xe0] != '-') return (uint32_t)latin1[c - 0xe0];
  if (c >= 0x100 && c <= 0x17f && ext_a[c - 0x100] != '-') return (uint32_t)ext_a[c - 0x100];
  switch (c) {
  case 0x3ac: return 0x3b1;
  case 0x3ad: return 0x3b5;
  case 0x3ae: return 0x3b7;
  case 0x3af: case 0x390: case 0x3ca: return 0x3b9;
  case 0x3cc: return 0x3bf;
  case 0x3cd: case 0x3b0: case 0x3cb: return 0x3c5;
  case 0x3ce: return 0x3c9;
  case 0x451: return 0x435;
  case 0x439: return 0x438;
  default: return c;
  }
}

// --- basic tokenizer -------------------------------------------------------------------

// A word being built: at most WP_MAX_WORD_CHARS + 1 characters are kept (enough to know it
// is too long).
typedef struct Word {
  char buf[(WP_MAX_WORD_CHARS + 1) * 4];
  size_t len;
  int chars;
} Word;

static void word_flush(Word *w, void (*word)(const char *, size_t, void *), void *ctx) {
  if (w->len) word(w->buf, w->len, ctx);
  w->len = 0;
  w->chars = 0;
}

static void word_add(Word *w, uint32_t cp) {
  if (w->chars > WP_MAX_WORD_CHARS) return;
  w->len += utf8_put(cp, w->buf + w->len);
  w->chars++;
}

static bool is_special(const WpVocab *v, const char *s, size_t len) {
  int id = wp_vocab_find(v, s, len);
  return id >= 0 && (id == v->unk || id == v->cls || id == v->sep || id == v->pad || id == v->mask);
}

void wp_basic_split(const WpVocab *v, const char *text,
                    void (*word)(const char *w, size_t len, void *ctx), void *ctx) {
  const unsigned char *s = (const unsigned char *)text;
  size_t n = strlen(text), i = 0;
  Word word_buf = {.len = 0}, *w = &word_buf;
  while (i < n) {
    // One whitespace-separated chunk [start, i) (CJK ideographs are chunks of their own).
    size_t start = i;
    int32_t cp = utf8_next(s, n, &i);
    if (cp < 0 || is_dropped((uint32_t)cp) || is_space((uint32_t)cp)) continue;
    if (!is_cjk((uint32_t)cp)) {
      size_t j = i;
      while (j < n) {
        size_t k = j;
        int32_t c2 = utf8_next(s, n, &k);
        if (c2 >= 0 && (is_space((uint32_t)c2) || is_cjk((uint32_t)c2))) break;
        j = k;
      }
      i = j;
    }
    if (is_special(v, text + start, i - start)) {  // BERT's never_split
      word(text + start, i - start, ctx);
      continue;
    }
    for (size_t k = start; k < i;) {
      int32_t c = utf8_next(s, i, &k);
      if (c < 0 || is_dropped((uint32_t)c)) continue;
      uint32_t u = strip_accent(to_lower((uint32_t)c));
      if (u == 0) continue;
      if (is_punct(u) || is_cjk(u)) {
        word_flush(w, word, ctx);
        word_add(w, u);
        word_flush(w, word, ctx);
      } else {
        word_add(w, u);
      }
    }
    word_flush(w, word, ctx);
  }
}

// --- WordPiece ---------------------------------------------------------------------------

typedef struct Collect {
  const WpVocab *v;
  int *ids;
  int cap, count;
  char *piece;  // "##" + a word's bytes
} Collect;

static void emit(Collect *c, int id) {
  if (c->count < c->cap) c->ids[c->count] = id;
  c->count++;
}

static int utf8_chars(const char *w, size_t len) {
  int n = 0;
  for (size_t i = 0; i < len; i++) n += ((unsigned char)w[i] & 0xc0) != 0x80;
  return n;
}

// Greedy longest-match-first: at each position the longest piece in the vocabulary
// ("##"-prefixed after the first); no piece at some position makes the whole word [UNK].
static void wordpiece(const char *w, size_t len, void *ctx) {
  Collect *c = ctx;
  if (utf8_chars(w, len) > WP_MAX_WORD_CHARS) {
    emit(c, c->v->unk);
    return;
  }
  int first = c->count;
  size_t start = 0;
  while (start < len) {
    size_t end = len;
    int id = -1;
    while (end > start) {
      size_t plen = 0;
      if (start > 0) {
        memcpy(c->piece, "##", 2);
        plen = 2;
      }
      memcpy(c->piece + plen, w + start, end - start);
      plen += end - start;
      if ((id = wp_vocab_find(c->v, c->piece, plen)) >= 0) break;
      do end--;  // back to the previous character boundary
      while (end > start && ((unsigned char)w[end] & 0xc0) == 0x80);
    }
    if (id < 0) {
      c->count = first;
      emit(c, c->v->unk);
      return;
    }
    emit(c, id);
    start = end;
  }
}

int wp_tokenize(const WpVocab *v, const char *text, int *ids, int cap) {
  char piece[(WP_MAX_WORD_CHARS + 1) * 4 + 3];
  Collect c = {.v = v, .ids = ids, .cap = cap, .piece = piece};
  wp_basic_split(v, text, wordpiece, &c);
  return c.count;
}
