// The synthetic grounded world (see synth.h): scenes, region features, the grammar of
// captions / questions / statements, and the writer of the data sets.
//
// Randomness: one splitmix64 stream per example, seeded from (seed, task, split, index)
// through the IR's counter-based mix, so every example is independent of the split sizes.
#include "data/synth.h"

#include <errno.h>
#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/mlm.h"
#include "data/wordpiece.h"
#include "ir/ir.h"
#include "runtime/safetensors.h"

// --- the world ---------------------------------------------------------------------------

enum { N_SHAPES = 4, N_COLOURS = 6, N_SIZES = 2, MAX_OBJECTS = 5 };
static const char *const shapes[N_SHAPES] = {"circle", "square", "triangle", "star"};
static const char *const colours[N_COLOURS] = {"red", "green", "blue", "yellow", "purple", "orange"};
static const char *const sizes[N_SIZES] = {"small", "large"};
static const char *const counts[MAX_OBJECTS + 1] = {"zero", "one", "two", "three", "four", "five"};
enum { REL_LEFT, REL_RIGHT, REL_ABOVE, REL_BELOW };
static const char *const relations[4] = {"left of", "right of", "above", "below"};

static const char *const vocab[] = {
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
    "a", "an", "the", "is", "are", "there", "of", "left", "right", "above", "below", "what", "colour",
    "shape", "size", "how", "many", "object", "image", "images", "has", "have", "both", "more",
    "than", "in", "?", ".", "yes", "no",
    "circle", "square", "triangle", "star", "red", "green", "blue", "yellow", "purple", "orange",
    "small", "large", "zero", "one", "two", "three", "four", "five", "##s",
};
#define N_VOCAB (int)(sizeof vocab / sizeof vocab[0])

// VQA answers: colours, shapes, sizes, counts, yes/no (label = position).
enum { ANS_COLOUR = 0, ANS_SHAPE = ANS_COLOUR + N_COLOURS, ANS_SIZE = ANS_SHAPE + N_SHAPES,
       ANS_COUNT = ANS_SIZE + N_SIZES, ANS_YES = ANS_COUNT + MAX_OBJECTS + 1, ANS_NO, N_ANSWERS };
static const char *answers[N_ANSWERS];

int synth_vocab(const char *const **tokens) {
  *tokens = vocab;
  return N_VOCAB;
}

int synth_answers(const char *const **out) {
  int k = 0;
  for (int i = 0; i < N_COLOURS; i++) answers[k++] = colours[i];
  for (int i = 0; i < N_SHAPES; i++) answers[k++] = shapes[i];
  for (int i = 0; i < N_SIZES; i++) answers[k++] = sizes[i];
  for (int i = 0; i <= MAX_OBJECTS; i++) answers[k++] = counts[i];
  answers[k++] = "yes";
  answers[k++] = "no";
  *out = answers;
  return N_ANSWERS;
}

SynthOptions synth_defaults(void) {
  return (SynthOptions){.n_train = 2000, .n_val = 500, .n_test = 500, .visual_dim = 32, .regions = 8,
                        .text_len = 24};
}

typedef struct Rng {
  uint64_t s;
} Rng;

static uint64_t rng_next(Rng *r) {  // splitmix64
  uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
static double rng_unif(Rng *r) { return (double)(rng_next(r) >> 11) * 0x1.0p-53; }
static int rng_int(Rng *r, int n) { return (int)(rng_unif(r) * n); }
static double rng_normal(Rng *r) {
  double u = rng_unif(r), v = rng_unif(r);
  return sqrt(-2.0 * log(1.0 - u)) * cos(2.0 * M_PI * v);
}

enum { TASK_WORLD, TASK_PRETRAIN, TASK_VQA, TASK_NLVR2, TASK_VCR, TASK_FLICKR };
enum { VCR_CHOICES = 4 };  // models/visualbert-vcr.json's default num_choices
static Rng rng_for(uint64_t seed, int task, int split, int64_t index) {
  uint64_t k = ir_rng_key_of(ir_rng_key_of(ir_rng_key_of(seed, (uint64_t)task), (uint64_t)split), (uint64_t)index);
  return (Rng){k};
}

typedef struct Obj {
  int shape, colour, size;
  double x, y;  // in [0, 1]; y grows upwards
} Obj;

typedef struct Scene {
  int n;
  Obj o[MAX_OBJECTS];
} Scene;

// 2..max objects, positions at least 0.06 apart on both axes (so relations are clear).
static void scene_gen(Rng *r, int max, Scene *s) {
  s->n = 2 + rng_int(r, max - 1);
  for (int i = 0; i < s->n; i++) {
    Obj *o = &s->o[i];
    o->shape = rng_int(r, N_SHAPES);
    o->colour = rng_int(r, N_COLOURS);
    o->size = rng_int(r, N_SIZES);
    for (int tries = 0; tries < 1000; tries++) {
      o->x = rng_unif(r);
      o->y = rng_unif(r);
      bool clear = true;
      for (int j = 0; j < i; j++) clear &= fabs(o->x - s->o[j].x) >= 0.06 && fabs(o->y - s->o[j].y) >= 0.06;
      if (clear) break;
    }
  }
}

static bool rel_holds(int rel, const Obj *a, const Obj *b) {
  switch (rel) {
  case REL_LEFT: return a->x < b->x;
  case REL_RIGHT: return a->x > b->x;
  case REL_ABOVE: return a->y > b->y;
  default: return a->y < b->y;
  }
}

// A true relation of a to b, horizontal or vertical at random.
static int rel_of(Rng *r, const Obj *a, const Obj *b) {
  if (rng_int(r, 2) == 0) return a->x < b->x ? REL_LEFT : REL_RIGHT;
  return a->y > b->y ? REL_ABOVE : REL_BELOW;
}

// --- features ------------------------------------------------------------------------------

// Attributes as a vector: one-hot shape, colour, size; x and y in [-1, 1]; a constant 1.
enum { N_ATTR = N_SHAPES + N_COLOURS + N_SIZES + 3 };
#define FEATURE_NOISE 0.1

typedef struct World {
  const SynthOptions *o;
  float *proj;  // [visual_dim, N_ATTR], normal(0, 1/sqrt(N_ATTR)), fixed by the seed
  WpVocab v;
} World;

static void region_features(const World *w, Rng *r, const Obj *ob, float *out /* [visual_dim] */) {
  double a[N_ATTR] = {0};
  a[ob->shape] = 1;
  a[N_SHAPES + ob->colour] = 1;
  a[N_SHAPES + N_COLOURS + ob->size] = 1;
  a[N_ATTR - 3] = 2 * ob->x - 1;
  a[N_ATTR - 2] = 2 * ob->y - 1;
  a[N_ATTR - 1] = 1;
  for (int d = 0; d < w->o->visual_dim; d++) {
    double s = 0;
    for (int k = 0; k < N_ATTR; k++) s += w->proj[d * N_ATTR + k] * a[k];
    out[d] = (float)(s + FEATURE_NOISE * rng_normal(r));
  }
}

// --- text ----------------------------------------------------------------------------------

typedef struct Text {
  char s[256];
  size_t len;
} Text;

static void say(Text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(Text *t, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(t->s + t->len, sizeof t->s - t->len, fmt, ap);
  va_end(ap);
  if (n > 0) t->len += (size_t)n;
}

static const char *article(const char *word) { return strchr("aeiou", word[0]) ? "an" : "a"; }

// "a [size] colour shape"
static void describe(Rng *r, Text *t, const Obj *o) {
  if (rng_int(r, 2)) say(t, "a %s %s %s", sizes[o->size], colours[o->colour], shapes[o->shape]);
  else say(t, "%s %s %s", article(colours[o->colour]), colours[o->colour], shapes[o->shape]);
}

// "OBJ_i REL OBJ_j" about two objects of s; who (if not NULL) gets i and j.
static void caption(Rng *r, const Scene *s, Text *t, int who[2]) {
  int i = rng_int(r, s->n), j = rng_int(r, s->n - 1);
  if (j >= i) j++;
  if (who) who[0] = i, who[1] = j;
  describe(r, t, &s->o[i]);
  say(t, " %s ", relations[rel_of(r, &s->o[i], &s->o[j])]);
  describe(r, t, &s->o[j]);
}

static int count_shape(const Scene *s, int shape) {
  int n = 0;
  for (int i = 0; i < s->n; i++) n += s->o[i].shape == shape;
  return n;
}

static bool has(const Scene *s, int colour, int shape) {
  for (int i = 0; i < s->n; i++)
    if (s->o[i].colour == colour && s->o[i].shape == shape) return true;
  return false;
}

// A question about s with one well-defined answer; *kind is the first label of the
// answer's type and *n_kind their number (for annotator noise).
static int question(Rng *r, const Scene *s, Text *t, int *kind, int *n_kind) {
  for (;;) {
    t->len = 0;
    const Obj *o = &s->o[rng_int(r, s->n)];
    int n_same = 0;
    switch (rng_int(r, 5)) {
    case 0: {  // what colour|size is the S1 REL the S2 ?  (S2 unique, one S1 in relation)
      const Obj *p = &s->o[rng_int(r, s->n)];
      if (p == o || p->shape == o->shape || count_shape(s, p->shape) != 1) continue;
      int rel = rel_of(r, o, p);
      for (int i = 0; i < s->n; i++) n_same += s->o[i].shape == o->shape && rel_holds(rel, &s->o[i], p);
      if (n_same != 1) continue;
      bool colour = rng_int(r, 2);
      say(t, "what %s is the %s %s the %s ?", colour ? "colour" : "size", shapes[o->shape], relations[rel],
          shapes[p->shape]);
      *kind = colour ? ANS_COLOUR : ANS_SIZE;
      *n_kind = colour ? N_COLOURS : N_SIZES;
      return colour ? ANS_COLOUR + o->colour : ANS_SIZE + o->size;
    }
    case 1:  // what shape is the COLOUR object ?
      for (int i = 0; i < s->n; i++) n_same += s->o[i].colour == o->colour;
      if (n_same != 1) continue;
      say(t, "what shape is the %s object ?", colours[o->colour]);
      *kind = ANS_SHAPE;
      *n_kind = N_SHAPES;
      return ANS_SHAPE + o->shape;
    case 2:  // what colour is the SIZE SHAPE ?
      for (int i = 0; i < s->n; i++) n_same += s->o[i].size == o->size && s->o[i].shape == o->shape;
      if (n_same != 1) continue;
      say(t, "what colour is the %s %s ?", sizes[o->size], shapes[o->shape]);
      *kind = ANS_COLOUR;
      *n_kind = N_COLOURS;
      return ANS_COLOUR + o->colour;
    case 3: {  // how many SHAPEs are there ?
      int shape = rng_int(r, N_SHAPES);
      say(t, "how many %ss are there ?", shapes[shape]);
      *kind = ANS_COUNT;
      *n_kind = MAX_OBJECTS + 1;
      return ANS_COUNT + count_shape(s, shape);
    }
    default: {  // is there a COLOUR SHAPE ?  (yes half the time)
      int colour = o->colour, shape = o->shape;
      if (rng_int(r, 2)) {
        colour = rng_int(r, N_COLOURS);
        shape = rng_int(r, N_SHAPES);
        if (has(s, colour, shape)) continue;
      }
      say(t, "is there %s %s %s ?", article(colours[colour]), colours[colour], shapes[shape]);
      *kind = ANS_YES;
      *n_kind = 2;
      return has(s, colour, shape) ? ANS_YES : ANS_NO;
    }
    }
  }
}

// A statement about the pair (left, right) whose truth is `want`, or false after many tries.
// The template is drawn first (each a third of the time), then its words until the truth fits.
static bool statement(Rng *r, const Scene *left, const Scene *right, bool want, Text *t) {
  int form = rng_int(r, 3);
  for (int tries = 0; tries < 200; tries++) {
    t->len = 0;
    const Scene *pick = rng_int(r, 2) ? left : right;
    const Obj *o = &pick->o[rng_int(r, pick->n)];
    int colour = rng_int(r, 2) ? o->colour : rng_int(r, N_COLOURS);
    int shape = rng_int(r, 2) ? o->shape : rng_int(r, N_SHAPES);
    bool truth;
    switch (form) {
    case 0: {
      bool l = rng_int(r, 2);
      say(t, "the %s image has %s %s %s .", l ? "left" : "right", article(colours[colour]), colours[colour],
          shapes[shape]);
      truth = has(l ? left : right, colour, shape);
      break;
    }
    case 1:
      say(t, "both images have %s %s %s .", article(colours[colour]), colours[colour], shapes[shape]);
      truth = has(left, colour, shape) && has(right, colour, shape);
      break;
    default: {
      bool l = rng_int(r, 2);
      say(t, "the %s image has more %ss than the %s image .", l ? "left" : "right", shapes[shape],
          l ? "right" : "left");
      int a = count_shape(left, shape), b = count_shape(right, shape);
      truth = l ? a > b : b > a;
    }
    }
    if (truth == want) return true;
  }
  return false;
}

// --- data sets -------------------------------------------------------------------------------

typedef struct Rows {  // one task's tensors for one split, N examples of C sequences each
  int64_t n, c;                                // c: VCR_CHOICES for VCR, else 1
  int64_t *ids, *tt, *vtt, *labels_i, *si;     // [N*C,T], [N*C,T], [N*C,R], labels [N,T] or [N], [N]
  int64_t *pos;                                // Flickr: region_to_phrase_position [N,T+R]
  float *am, *vis, *vam, *labels_f;            // [N*C,T], [N*C,R,Dv], [N*C,R], [N,K] or Flickr [N,T+R,R]
} Rows;

static void rows_free(Rows *r) {
  free(r->ids), free(r->tt), free(r->vtt), free(r->labels_i), free(r->si), free(r->pos);
  free(r->am), free(r->vis), free(r->vam), free(r->labels_f);
}

// Tokenizes text into tokens (at most cap); fails if the grammar made a longer sentence.
static int tokens_of(const World *w, const Text *t, int *tok, int cap, Diag *d) {
  int n = wp_tokenize(&w->v, t->s, tok, cap);
  if (n > cap)
    diag_error(d, "--set text_len=%d is too short for \"%s\" (%d tokens with [CLS] and [SEP]s)", w->o->text_len,
               t->s, n + (int)(w->o->text_len - cap));
  return n > cap ? -1 : n;
}

// Row b: [CLS] a [SEP] (b [SEP]) [PAD]...; token types 0 then 1.
static bool put_text(const World *w, Rows *rows, int64_t b, const Text *ta, const Text *tb, Diag *d) {
  int T = w->o->text_len, ta_n, tb_n = 0;
  int tok_a[256], tok_b[256];
  int room = T - 2 - (tb ? 1 : 0);
  if ((ta_n = tokens_of(w, ta, tok_a, room < 0 ? 0 : room, d)) < 0) return false;
  if (tb && (tb_n = tokens_of(w, tb, tok_b, room - ta_n, d)) < 0) return false;
  int64_t *ids = rows->ids + b * T, *tt = rows->tt + b * T;
  float *am = rows->am + b * T;
  int k = 0;
  ids[k++] = w->v.cls;
  for (int i = 0; i < ta_n; i++) ids[k++] = tok_a[i];
  ids[k++] = w->v.sep;
  int first_b = k;
  if (tb) {
    for (int i = 0; i < tb_n; i++) ids[k++] = tok_b[i];
    ids[k++] = w->v.sep;
  }
  for (int i = 0; i < T; i++) {
    if (i >= k) ids[i] = w->v.pad;
    tt[i] = tb && i >= first_b && i < k;
    am[i] = i < k;
  }
  return true;
}

// Scene s into region slots [first, first + count) of example b (the rest masked out).
static void put_regions(const World *w, Rng *r, Rows *rows, int64_t b, const Scene *s, int first, int count,
                        int type) {
  int R = w->o->regions, Dv = w->o->visual_dim;
  for (int k = 0; k < count; k++) {
    int64_t slot = b * R + first + k;
    rows->vtt[slot] = type;
    rows->vam[slot] = k < s->n;
    float *f = rows->vis + slot * Dv;
    if (k < s->n) region_features(w, r, &s->o[k], f);
    else memset(f, 0, (size_t)Dv * sizeof *f);
  }
}

static bool rows_alloc(const World *w, Rows *r, int64_t n, int task) {
  int64_t T = w->o->text_len, R = w->o->regions, Dv = w->o->visual_dim;
  memset(r, 0, sizeof *r);
  r->n = n;
  r->c = task == TASK_VCR ? VCR_CHOICES : 1;
  size_t nn = (size_t)(n * r->c) + 1;
  r->ids = calloc(nn * (size_t)T, sizeof(int64_t));
  r->tt = calloc(nn * (size_t)T, sizeof(int64_t));
  r->am = calloc(nn * (size_t)T, sizeof(float));
  r->vis = calloc(nn * (size_t)(R * Dv), sizeof(float));
  r->vtt = calloc(nn * (size_t)R, sizeof(int64_t));
  r->vam = calloc(nn * (size_t)R, sizeof(float));
  if (task == TASK_VQA) r->labels_f = calloc(nn * N_ANSWERS, sizeof(float));
  else if (task == TASK_FLICKR) r->labels_f = calloc(nn * (size_t)((T + R) * R), sizeof(float));
  else r->labels_i = calloc(nn * (size_t)(task == TASK_PRETRAIN ? T : 1), sizeof(int64_t));
  if (task == TASK_PRETRAIN) r->si = calloc(nn, sizeof(int64_t));
  if (task == TASK_FLICKR) r->pos = calloc(nn * (size_t)(T + R), sizeof(int64_t));
  return r->ids && r->tt && r->am && r->vis && r->vtt && r->vam && (r->labels_f || r->labels_i) &&
         (task != TASK_PRETRAIN || r->si) && (task != TASK_FLICKR || r->pos);
}

// VCR-like: a VQA question about one scene and VCR_CHOICES answers, the right one at a
// random place, the others distinct wrong answers (of the right one's kind while there are
// any); sequence c of example b is "[CLS] question [SEP] answer_c [SEP]" with the scene.
static bool gen_choices(const World *w, Rng *r, int64_t b, Rows *rows, Diag *d) {
  int R = w->o->regions, kind, n_kind;
  const char *const *ans;
  synth_answers(&ans);
  Scene s;
  Text q = {.len = 0};
  scene_gen(r, R < MAX_OBJECTS ? R : MAX_OBJECTS, &s);
  int right = question(r, &s, &q, &kind, &n_kind), pick[VCR_CHOICES], place = rng_int(r, VCR_CHOICES);
  for (int c = 0; c < VCR_CHOICES; c++) {
    bool fresh = false;
    while (c != place && !fresh) {
      int used = 0;  // wrong answers of the kind so far
      for (int k = 0; k < c; k++) used += k != place && pick[k] >= kind && pick[k] < kind + n_kind;
      pick[c] = used < n_kind - 1 ? kind + rng_int(r, n_kind) : rng_int(r, N_ANSWERS);
      fresh = pick[c] != right;
      for (int k = 0; k < c; k++) fresh &= pick[k] != pick[c];
    }
    if (c == place) pick[c] = right;
    Text a = {.len = 0};
    say(&a, "%s", ans[pick[c]]);
    int64_t seq = b * VCR_CHOICES + c, first = b * VCR_CHOICES;
    if (c == 0) put_regions(w, r, rows, seq, &s, 0, R, 0);
    else {  // the same image (features, types, mask) in every choice
      memcpy(rows->vis + seq * R * w->o->visual_dim, rows->vis + first * R * w->o->visual_dim,
             (size_t)(R * w->o->visual_dim) * sizeof *rows->vis);
      memcpy(rows->vtt + seq * R, rows->vtt + first * R, (size_t)R * sizeof *rows->vtt);
      memcpy(rows->vam + seq * R, rows->vam + first * R, (size_t)R * sizeof *rows->vam);
    }
    if (!put_text(w, rows, seq, &q, &a, d)) return false;
  }
  rows->labels_i[b] = place;
  return true;
}

// Flickr-like: "[CLS] caption [SEP]" naming two objects of a scene; slot k of
// region_to_phrase_position is the text position of the k-th object's shape word (the
// caption's k-th shape token), its labels row that object's region (one-hot); the other
// slots are -1 with all-zero labels (no term in the KL divergence).
static bool gen_grounding(const World *w, Rng *r, int64_t b, Rows *rows, Diag *d) {
  int R = w->o->regions, T = w->o->text_len, N = T + R, who[2];
  Scene s;
  Text t = {.len = 0};
  scene_gen(r, R < MAX_OBJECTS ? R : MAX_OBJECTS, &s);
  caption(r, &s, &t, who);
  put_regions(w, r, rows, b, &s, 0, R, 0);
  if (!put_text(w, rows, b, &t, NULL, d)) return false;
  int64_t *pos = rows->pos + b * N;
  for (int k = 0; k < N; k++) pos[k] = -1;
  for (int i = 1, k = 0; i < T && k < 2; i++) {
    int64_t id = rows->ids[b * T + i];
    for (int sh = 0; sh < N_SHAPES; sh++)
      if (id == wp_vocab_find(&w->v, shapes[sh], strlen(shapes[sh]))) {
        pos[k] = i;
        rows->labels_f[(b * N + k) * R + who[k]] = 1;
        k++;
        break;
      }
  }
  return true;
}

static bool gen_example(const World *w, int task, int split, int64_t b, Rows *rows, Diag *d) {
  Rng r = rng_for(w->o->seed, task, split, b);
  int R = w->o->regions, T = w->o->text_len;
  Scene s, s2;
  Text ta = {.len = 0}, tb = {.len = 0};
  if (task == TASK_PRETRAIN) {  // two captions of one scene; labels ignored until masked
    scene_gen(&r, R < MAX_OBJECTS ? R : MAX_OBJECTS, &s);
    caption(&r, &s, &ta, NULL);
    caption(&r, &s, &tb, NULL);
    put_regions(w, &r, rows, b, &s, 0, R, 0);
    for (int i = 0; i < T; i++) rows->labels_i[b * T + i] = -100;
    rows->si[b] = 1;
    return put_text(w, rows, b, &ta, &tb, d);
  }
  if (task == TASK_VQA) {  // "[CLS] question ? [MASK] [SEP]"; soft scores from 10 annotators (p 0.9 right)
    scene_gen(&r, R < MAX_OBJECTS ? R : MAX_OBJECTS, &s);
    int kind, n_kind, ans = question(&r, &s, &ta, &kind, &n_kind);
    say(&ta, " [MASK]");  // the VQA head reads the token before the last [SEP] (HF's layout)
    int votes[N_ANSWERS] = {0};
    for (int a = 0; a < 10; a++) votes[rng_unif(&r) < 0.9 ? ans : kind + rng_int(&r, n_kind)]++;
    for (int k = 0; k < N_ANSWERS; k++) rows->labels_f[b * N_ANSWERS + k] = (float)fmin(1.0, 0.3 * votes[k]);
    put_regions(w, &r, rows, b, &s, 0, R, 0);
    return put_text(w, rows, b, &ta, NULL, d);
  }
  if (task == TASK_VCR)  // Q -> A among VCR_CHOICES: "[CLS] question [SEP] answer [SEP]" each
    return gen_choices(w, &r, b, rows, d);
  if (task == TASK_FLICKR)  // a caption; each named object's shape token -> its region
    return gen_grounding(w, &r, b, rows, d);
  // NLVR2: two scenes of up to R/2 objects, image 0 ("left") then image 1; half true.
  int half = R / 2, max = half < MAX_OBJECTS ? half : MAX_OBJECTS;
  bool want = rng_int(&r, 2);
  do {
    scene_gen(&r, max, &s);
    scene_gen(&r, max, &s2);
  } while (!statement(&r, &s, &s2, want, &ta));
  rows->labels_i[b] = want;
  put_regions(w, &r, rows, b, &s, 0, half, 0);
  put_regions(w, &r, rows, b, &s2, half, R - half, 1);
  return put_text(w, rows, b, &ta, NULL, d);
}

static bool write_rows(const World *w, const char *path, int task, const Rows *r, Diag *d) {
  int64_t N = r->n, C = r->c, T = w->o->text_len, R = w->o->regions, Dv = w->o->visual_dim;
  StTensor t[9];
  int n = 0;
#define ADD(NAME, DT, DATA, ...)                                                         \
  do {                                                                                   \
    int64_t sh[] = {__VA_ARGS__};                                                        \
    StTensor *x = &t[n++];                                                               \
    *x = (StTensor){.name = (char *)(NAME), .dtype = DT, .rank = (int)(sizeof sh / sizeof sh[0]), \
                    .data = (void *)(DATA)};                                             \
    memcpy(x->shape, sh, sizeof sh);                                                     \
    x->nbytes = (size_t)st_numel(x) * dt_size(DT);                                       \
  } while (0)
  if (task == TASK_VCR) {  // the choice axis after the example's
    ADD("input_ids", DT_I64, r->ids, N, C, T);
    ADD("token_type_ids", DT_I64, r->tt, N, C, T);
    ADD("attention_mask", DT_F32, r->am, N, C, T);
    ADD("visual_embeds", DT_F32, r->vis, N, C, R, Dv);
    ADD("visual_token_type_ids", DT_I64, r->vtt, N, C, R);
    ADD("visual_attention_mask", DT_F32, r->vam, N, C, R);
  } else {
    ADD("input_ids", DT_I64, r->ids, N, T);
    ADD("token_type_ids", DT_I64, r->tt, N, T);
    ADD("attention_mask", DT_F32, r->am, N, T);
    ADD("visual_embeds", DT_F32, r->vis, N, R, Dv);
    ADD("visual_token_type_ids", DT_I64, r->vtt, N, R);
    ADD("visual_attention_mask", DT_F32, r->vam, N, R);
  }
  int64_t mlm_cfg[6] = {w->v.cls, w->v.sep, w->v.pad, w->v.mask, w->v.unk, w->v.n};
  if (task == TASK_VQA) {
    ADD("labels", DT_F32, r->labels_f, N, N_ANSWERS);
  } else if (task == TASK_FLICKR) {
    ADD("region_to_phrase_position", DT_I64, r->pos, N, T + R);
    ADD("labels", DT_F32, r->labels_f, N, T + R, R);
  } else if (task == TASK_NLVR2 || task == TASK_VCR) {
    ADD("labels", DT_I64, r->labels_i, N);
  } else {
    ADD("labels", DT_I64, r->labels_i, N, T);
    ADD("sentence_image_labels", DT_I64, r->si, N);
    ADD(MLM_CONFIG_TENSOR, DT_I64, mlm_cfg, 6);
  }
#undef ADD
  return st_write(path, t, n, d);
}

// The task's own text and images in the pre-training layout (task-specific pre-training:
// MLM on the target task's data): row b is example b's sequence (VCR: the question with its
// right answer), labels -100, sentence_image_labels 1 (every pair matched).
static bool task_mlm_rows(const World *w, const Rows *task, Rows *out) {
  int64_t T = w->o->text_len, R = w->o->regions, Dv = w->o->visual_dim;
  if (!rows_alloc(w, out, task->n, TASK_PRETRAIN)) return false;
  for (int64_t b = 0; b < task->n; b++) {
    int64_t src = task->c > 1 ? b * task->c + task->labels_i[b] : b;
    memcpy(out->ids + b * T, task->ids + src * T, (size_t)T * sizeof *out->ids);
    memcpy(out->tt + b * T, task->tt + src * T, (size_t)T * sizeof *out->tt);
    memcpy(out->am + b * T, task->am + src * T, (size_t)T * sizeof *out->am);
    memcpy(out->vis + b * R * Dv, task->vis + src * R * Dv, (size_t)(R * Dv) * sizeof *out->vis);
    memcpy(out->vtt + b * R, task->vtt + src * R, (size_t)R * sizeof *out->vtt);
    memcpy(out->vam + b * R, task->vam + src * R, (size_t)R * sizeof *out->vam);
    for (int64_t i = 0; i < T; i++) out->labels_i[b * T + i] = -100;
    out->si[b] = 1;
  }
  return true;
}

// One draw of the on-the-fly objectives (keyed by step -1 - split), kept in a file for
// kiln eval: mismatched pairs (the pre-training split's only) then masking, in place.
static bool write_static(const World *w, const char *path, int split, bool mismatch, Rows *rows, Diag *d) {
  MlmConfig mc = mlm_config(w->v.cls, w->v.sep, w->v.pad, w->v.mask, w->v.unk, w->v.n);
  int64_t n = rows->n, T = w->o->text_len;
  if (mismatch) {
    int64_t *pool = malloc(((size_t)(n * T) + 1) * sizeof *pool);
    if (!pool) return diag_error(d, "%s: out of memory", path);
    memcpy(pool, rows->ids, (size_t)(n * T) * sizeof *pool);
    mlm_mismatch_batch(&mc, w->o->seed, -1 - split, 0, rows->ids, rows->tt, rows->am, rows->si, n, T, pool, n);
    free(pool);
  }
  mlm_mask_batch(&mc, w->o->seed, -1 - split, 0, rows->ids, rows->labels_i, n, T);
  return write_rows(w, path, TASK_PRETRAIN, rows, d);
}

static bool write_text_file(const char *path, const char *const *lines, int n, Diag *d) {
  FILE *f = fopen(path, "w");
  if (!f) return diag_error(d, "%s: cannot write: %s", path, strerror(errno));
  for (int i = 0; i < n; i++) fprintf(f, "%s\n", lines[i]);
  if (fclose(f) != 0) return diag_error(d, "%s: write error", path);
  return true;
}

static bool check_options(const SynthOptions *o, Diag *d) {
  if (o->visual_dim < 1 || o->visual_dim > 65536)
    return diag_error(d, "--set visual_dim=%d: must be in [1, 65536]", o->visual_dim);
  if (o->regions < 4 || o->regions > 1024)
    return diag_error(d, "--set regions=%d: must be in [4, 1024] (NLVR2 needs two objects per image)",
                      o->regions);
  if (o->text_len < 4 || o->text_len > 512) return diag_error(d, "--set text_len=%d: must be in [4, 512]", o->text_len);
  if (o->n_train < 0 || o->n_val < 0 || o->n_test < 0) return diag_error(d, "negative number of examples");
  return true;
}

// mkdir -p
static bool make_dir(const char *dir, Diag *d) {
  char p[4096];
  if (snprintf(p, sizeof p, "%s", dir) >= (int)sizeof p) return diag_error(d, "%s: path too long", dir);
  for (char *c = p + 1;; c++) {
    bool end = !*c;
    if (*c == '/' || end) {
      *c = 0;
      if (mkdir(p, 0777) != 0 && errno != EEXIST) return diag_error(d, "%s: cannot create: %s", p, strerror(errno));
      if (end) break;
      *c = '/';
    }
  }
  struct stat st;
  if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) return diag_error(d, "%s: not a directory", dir);
  return true;
}

bool synth_write(const char *dir, const SynthOptions *o, Diag *d) {
  if (!check_options(o, d) || !make_dir(dir, d)) return false;
  World w = {.o = o};
  if (!wp_vocab_from_tokens(vocab, N_VOCAB, "synth vocabulary", &w.v, d)) return false;
  w.proj = malloc((size_t)o->visual_dim * N_ATTR * sizeof *w.proj);
  Rng pr = rng_for(o->seed, TASK_WORLD, 0, 0);
  for (int i = 0; i < o->visual_dim * N_ATTR; i++) w.proj[i] = (float)(rng_normal(&pr) / sqrt((double)N_ATTR));

  char path[4096];
  const char *const *ans;
  int n_ans = synth_answers(&ans);
  bool ok = true;
#define PATH(...) (snprintf(path, sizeof path, __VA_ARGS__) < (int)sizeof path ? path : "(path too long)")
  ok = ok && write_text_file(PATH("%s/vocab.txt", dir), vocab, N_VOCAB, d);
  ok = ok && write_text_file(PATH("%s/answers.txt", dir), ans, n_ans, d);
  if (ok) {
    char l[4][64];
    snprintf(l[0], sizeof l[0], "vocab=%d", N_VOCAB);
    snprintf(l[1], sizeof l[1], "visual_dim=%d", o->visual_dim);
    snprintf(l[2], sizeof l[2], "regions=%d", o->regions);
    snprintf(l[3], sizeof l[3], "text_len=%d", o->text_len);
    const char *lines[5] = {l[0], l[1], l[2], l[3], NULL};
    char nl[64];
    snprintf(nl, sizeof nl, "num_labels=%d", n_ans);
    lines[4] = nl;
    ok = write_text_file(PATH("%s/config.txt", dir), lines, 5, d);
  }
  static const char *const split_names[3] = {"train", "val", "test"};
  const int split_n[3] = {o->n_train, o->n_val, o->n_test};
  static const int tasks[5] = {TASK_PRETRAIN, TASK_VQA, TASK_NLVR2, TASK_VCR, TASK_FLICKR};
  static const char *const task_names[5] = {"pretrain", "vqa", "nlvr2", "vcr", "flickr"};
  for (int ti = 0; ok && ti < 5; ti++)
    for (int sp = 0; ok && sp < 3; sp++) {
      Rows rows;
      if (!rows_alloc(&w, &rows, split_n[sp], tasks[ti])) {
        rows_free(&rows);
        ok = diag_error(d, "%s: out of memory for %d examples", dir, split_n[sp]);
        break;
      }
      for (int64_t b = 0; ok && b < rows.n; b++) ok = gen_example(&w, tasks[ti], sp, b, &rows, d);
      ok = ok && write_rows(&w, PATH("%s/%s-%s.safetensors", dir, task_names[ti], split_names[sp]), tasks[ti],
                            &rows, d);
      if (ok && tasks[ti] == TASK_PRETRAIN)  // one draw of the on-the-fly objectives, kept
        ok = write_static(&w, PATH("%s/pretrain-static-%s.safetensors", dir, split_names[sp]), sp, true, &rows, d);
      Rows mlm = {0};
      if (ok && tasks[ti] != TASK_PRETRAIN) {  // the task's text and images for MLM, and one draw
        ok = task_mlm_rows(&w, &rows, &mlm) ||
             diag_error(d, "%s: out of memory for %d examples", dir, split_n[sp]);
        ok = ok && write_rows(&w, PATH("%s/%s-mlm-%s.safetensors", dir, task_names[ti], split_names[sp]),
                              TASK_PRETRAIN, &mlm, d);
        ok = ok && write_static(&w, PATH("%s/%s-mlm-static-%s.safetensors", dir, task_names[ti], split_names[sp]),
                                sp, false, &mlm, d);
      }
      rows_free(&mlm);
      rows_free(&rows);
    }
#undef PATH
  free(w.proj);
  wp_vocab_free(&w.v);
  return ok;
}
