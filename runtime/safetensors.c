// Safetensors files: st_read loads a whole file and validates every field of its header
// (types, shapes, offsets, overlaps, duplicates) before handing out tensors; st_write writes
// through rt_write_atomic (a temporary of a unique name, fsynced, renamed over the target).
//
// Tensor data points into the file buffer at whatever offset the file gives, so it may be
// misaligned for its type: read elements with memcpy or dt_load, never through a cast pointer.
#include "runtime/safetensors.h"

#include <assert.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/files.h"
#include "runtime/text.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors data is little-endian; kiln runs on little-endian hosts only"
#endif

#define ST_MAX_HEADER 100000000u  // 100 MB, the reference implementation's limit
#define ST_METADATA "__metadata__"

int64_t st_numel(const StTensor *t) {
  int64_t n = 1;
  for (int i = 0; i < t->rank; i++) n *= t->shape[i];
  return n;
}

static char *st_strdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *p = malloc(n);
  if (p) memcpy(p, s, n);
  return p;
}

// "[2,3]" (the spelling of the error messages).
static void format_shape(char *buf, size_t cap, int rank, const int64_t *shape) {
  size_t len = (size_t)snprintf(buf, cap, "[");
  for (int i = 0; i < rank && len < cap; i++)
    len += (size_t)snprintf(buf + len, cap - len, "%s%" PRId64, i ? "," : "", shape[i]);
  if (len < cap) snprintf(buf + len, cap - len, "]");
}

// numel * dt_size(dtype) in bytes, or false if it does not fit in int64.
static bool shape_nbytes(DType dtype, int rank, const int64_t *shape, size_t *out) {
  int64_t n = 1;
  for (int i = 0; i < rank; i++) {
    assert(shape[i] >= 0);
    if (shape[i] == 0) { *out = 0; return true; }
  }
  for (int i = 0; i < rank; i++) {
    if (n > INT64_MAX / shape[i]) return false;
    n *= shape[i];
  }
  if (n > INT64_MAX / (int64_t)dt_size(dtype) ||
      (uint64_t)n * dt_size(dtype) > SIZE_MAX) return false;
  *out = (size_t)n * dt_size(dtype);
  return true;
}

// --- reading: the raw file -------------------------------------------------------------

static bool read_whole_file(const char *path, unsigned char **buf_out, size_t *size_out,
                            Diag *d) {
  FILE *fp = rt_open_read(path, d);  // a regular file: no FIFO, device or directory
  if (!fp) return false;
  struct stat sb;
  if (fstat(fileno(fp), &sb) != 0) {
    int err = errno;
    fclose(fp);
    return diag_error(d, "%s: cannot stat: %s", path, strerror(err));
  }
  if (sb.st_size < 0 || (uint64_t)sb.st_size > SIZE_MAX - 1) {
    fclose(fp);
    return diag_error(d, "%s: file too large (%jd bytes)", path, (intmax_t)sb.st_size);
  }
  size_t size = (size_t)sb.st_size;
  unsigned char *buf = malloc(size ? size : 1);
  if (!buf) {
    fclose(fp);
    return diag_error(d, "%s: out of memory reading %zu bytes", path, size);
  }
  size_t got = fread(buf, 1, size, fp);
  if (got != size || ferror(fp)) {
    int err = errno;
    bool io_error = ferror(fp);
    fclose(fp);
    free(buf);
    if (io_error) return diag_error(d, "%s: read error: %s", path, strerror(err));
    return diag_error(d, "%s: file shrank while reading (%zu of %zu bytes)", path, got, size);
  }
  fclose(fp);
  *buf_out = buf;
  *size_out = size;
  return true;
}

// --- reading: the JSON header ----------------------------------------------------------

typedef struct Reader {
  const char *path;
  Diag *d;
  size_t data_size;  // bytes after the header
} Reader;

// A whole JSON number in [0, 2^53] (cJSON holds numbers as doubles, exact up to 2^53).
static bool json_uint(const cJSON *j, uint64_t *out) {
  if (!cJSON_IsNumber(j)) return false;
  double v = j->valuedouble;
  if (!(v >= 0 && v <= 0x1p53) || v != floor(v)) return false;
  *out = (uint64_t)v;
  return true;
}

// How a JSON value that should have been a non-negative integer looks: "-1", "2.5", "a string".
static void describe_bad_uint(char *buf, size_t cap, const cJSON *j) {
  if (!cJSON_IsNumber(j)) {
    snprintf(buf, cap, "%s", rt_json_kind(j));
    return;
  }
  for (int prec = 1; prec <= 17; prec++) {  // the shortest spelling of the same double
    snprintf(buf, cap, "%.*g", prec, j->valuedouble);
    if (strtod(buf, NULL) == j->valuedouble) return;
  }
}

// Tensor names are UTF-8, read or written: other readers refuse a header that is not.
static bool check_name_utf8(const char *path, const char *name, Diag *d) {
  size_t bad;
  if (rt_utf8_valid(name, strlen(name), &bad)) return true;
  return diag_error(d, "%s: tensor name \"%.*s...\" is not valid UTF-8 (byte 0x%02x at offset %zu)",
                    path, (int)bad, name, (unsigned char)name[bad], bad);
}

static bool tensor_error(const Reader *r, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static bool tensor_error(const Reader *r, const char *name, const char *fmt, ...) {
  char msg[DIAG_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return diag_error(r->d, "%s: tensor \"%s\": %s", r->path, name, msg);
}

static bool parse_metadata(const Reader *r, const cJSON *meta) {
  if (!cJSON_IsObject(meta))
    return diag_error(r->d, "%s: \"" ST_METADATA "\" must be an object of strings, not %s",
                      r->path, rt_json_kind(meta));
  const cJSON *kv;
  cJSON_ArrayForEach(kv, meta) {
    if (!cJSON_IsString(kv))
      return diag_error(r->d, "%s: \"" ST_METADATA "\": value of \"%s\" is %s, must be a string",
                        r->path, kv->string, rt_json_kind(kv));
  }
  return true;
}

static bool parse_dtype(const Reader *r, const char *name, const cJSON *j, StTensor *t) {
  if (!cJSON_IsString(j))
    return tensor_error(r, name, "dtype is %s, must be a string", rt_json_kind(j));
  // Only the safetensors spelling ("F32"); other tools would not read "f32".
  if (!dt_parse(j->valuestring, &t->dtype) || strcmp(dt_st_name(t->dtype), j->valuestring)) {
    char known[128];
    size_t len = 0;
    for (int k = 0; k < DT_COUNT; k++)
      len += (size_t)snprintf(known + len, sizeof known - len, "%s%s", k ? ", " : "",
                              dt_st_name((DType)k));
    return tensor_error(r, name, "unknown dtype \"%s\" (kiln reads %s)", j->valuestring, known);
  }
  return true;
}

static bool parse_shape(const Reader *r, const char *name, const cJSON *j, StTensor *t) {
  if (!cJSON_IsArray(j))
    return tensor_error(r, name, "shape is %s, must be an array of integers", rt_json_kind(j));
  int rank = cJSON_GetArraySize(j);
  if (rank > ST_MAX_RANK)
    return tensor_error(r, name, "shape has rank %d; kiln supports at most %d", rank,
                        ST_MAX_RANK);
  t->rank = rank;
  int i = 0;
  const cJSON *dim;
  cJSON_ArrayForEach(dim, j) {
    uint64_t v;
    if (!json_uint(dim, &v)) {
      char bad[64];
      describe_bad_uint(bad, sizeof bad, dim);
      return tensor_error(r, name, "shape[%d] is %s, must be a non-negative integer", i, bad);
    }
    t->shape[i++] = (int64_t)v;
  }
  if (!shape_nbytes(t->dtype, t->rank, t->shape, &t->nbytes)) {
    char sh[256];
    format_shape(sh, sizeof sh, t->rank, t->shape);
    return tensor_error(r, name, "shape %s has too many elements", sh);
  }
  return true;
}

// Checks data_offsets against the data size and the tensor's byte size; returns begin.
static bool parse_offsets(const Reader *r, const char *name, const cJSON *j,
                          const StTensor *t, size_t *begin_out) {
  if (!cJSON_IsArray(j) || cJSON_GetArraySize(j) != 2)
    return tensor_error(r, name, "data_offsets must be an array of two integers [begin, end]");
  uint64_t off[2];
  for (int k = 0; k < 2; k++) {
    const cJSON *item = cJSON_GetArrayItem(j, k);
    if (!json_uint(item, &off[k])) {
      char bad[64];
      describe_bad_uint(bad, sizeof bad, item);
      return tensor_error(r, name, "data_offsets[%d] is %s, must be a non-negative integer",
                          k, bad);
    }
  }
  uint64_t begin = off[0], end = off[1];
  if (begin > end)
    return tensor_error(r, name, "data_offsets [%" PRIu64 ", %" PRIu64 "]: begin %" PRIu64
                        " > end %" PRIu64, begin, end, begin, end);
  if (end > r->data_size)
    return tensor_error(r, name, "data_offsets [%" PRIu64 ", %" PRIu64 "] run past the end "
                        "of the data (%zu bytes)", begin, end, r->data_size);
  if (end - begin != t->nbytes) {
    char sh[256];
    format_shape(sh, sizeof sh, t->rank, t->shape);
    return tensor_error(r, name, "data_offsets [%" PRIu64 ", %" PRIu64 "] hold %" PRIu64
                        " bytes but %s %s needs %zu", begin, end, end - begin,
                        dt_st_name(t->dtype), sh, t->nbytes);
  }
  *begin_out = (size_t)begin;
  return true;
}

// One header entry {"dtype": .., "shape": .., "data_offsets": ..}; data is set from begin.
static bool parse_entry(const Reader *r, const cJSON *entry, StTensor *t, size_t *begin) {
  const char *name = entry->string;
  if (!*name) return diag_error(r->d, "%s: a tensor has an empty name", r->path);
  if (!check_name_utf8(r->path, name, r->d)) return false;
  if (!cJSON_IsObject(entry))
    return tensor_error(r, name, "entry is %s, must be an object", rt_json_kind(entry));
  const cJSON *dtype = NULL, *shape = NULL, *offsets = NULL, *key;
  cJSON_ArrayForEach(key, entry) {
    const cJSON **slot = !strcmp(key->string, "dtype")          ? &dtype
                         : !strcmp(key->string, "shape")        ? &shape
                         : !strcmp(key->string, "data_offsets") ? &offsets
                                                                : NULL;
    if (!slot)
      return tensor_error(r, name, "unknown key \"%s\" (an entry has only dtype, shape and "
                          "data_offsets)", key->string);
    if (*slot) return tensor_error(r, name, "duplicate key \"%s\"", key->string);
    *slot = key;
  }
  if (!dtype) return tensor_error(r, name, "missing \"dtype\"");
  if (!shape) return tensor_error(r, name, "missing \"shape\"");
  if (!offsets) return tensor_error(r, name, "missing \"data_offsets\"");
  return parse_dtype(r, name, dtype, t) && parse_shape(r, name, shape, t) &&
         parse_offsets(r, name, offsets, t, begin);
}

static int cmp_by_name(const void *a, const void *b) {
  return strcmp((*(const StTensor *const *)a)->name, (*(const StTensor *const *)b)->name);
}

// By start of data, then by length.
static int cmp_by_data(const void *a, const void *b) {
  const StTensor *x = *(const StTensor *const *)a, *y = *(const StTensor *const *)b;
  if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
  return (x->nbytes > y->nbytes) - (x->nbytes < y->nbytes);
}

// Duplicate names, then overlapping data (empty tensors overlap nothing). Gaps are allowed.
static bool check_tensor_set(const Reader *r, const StTensor *ts, int n) {
  if (n < 2) return true;
  const StTensor **order = malloc((size_t)n * sizeof *order);
  if (!order) return diag_error(r->d, "%s: out of memory", r->path);
  for (int i = 0; i < n; i++) order[i] = &ts[i];
  bool ok = true;
  qsort(order, (size_t)n, sizeof *order, cmp_by_name);
  for (int i = 1; i < n && ok; i++)
    if (!strcmp(order[i - 1]->name, order[i]->name))
      ok = diag_error(r->d, "%s: duplicate tensor name \"%s\"", r->path, order[i]->name);
  qsort(order, (size_t)n, sizeof *order, cmp_by_data);
  const StTensor *last = NULL;  // the non-empty tensor reaching furthest so far
  for (int i = 0; i < n && ok; i++) {
    const StTensor *t = order[i];
    if (!t->nbytes) continue;
    size_t begin = t->offset;
    if (last) {
      size_t lbegin = last->offset, lend = lbegin + last->nbytes;
      if (begin < lend)
        ok = diag_error(r->d, "%s: tensors \"%s\" [%zu, %zu] and \"%s\" [%zu, %zu] overlap",
                        r->path, last->name, lbegin, lend, t->name, begin, begin + t->nbytes);
    }
    if (!last || t->offset + t->nbytes > last->offset + last->nbytes) last = t;
  }
  free(order);
  return ok;
}

// BOOL elements must be 0 or 1: anything else is corrupt data that no tool would write.
static bool check_bool_data(const Reader *r, const StTensor *t) {
  const unsigned char *b = t->data;
  for (size_t i = 0; i < t->nbytes; i++)
    if (b[i] > 1)
      return tensor_error(r, t->name, "BOOL value %u at element %zu is not 0 or 1", b[i], i);
  return true;
}

// Fills f->tensors from the parsed header; data starts at `base` (data_size bytes), or is
// not in memory (NULL: st_open).
static bool parse_header(const Reader *r, const cJSON *root, unsigned char *base, StFile *f) {
  if (!cJSON_IsObject(root))
    return diag_error(r->d, "%s: header is %s, must be a JSON object", r->path,
                      rt_json_kind(root));
  int n = 0;
  bool seen_metadata = false;
  const cJSON *entry;
  cJSON_ArrayForEach(entry, root) {
    if (strcmp(entry->string, ST_METADATA)) { n++; continue; }
    if (seen_metadata) return diag_error(r->d, "%s: duplicate \"" ST_METADATA "\"", r->path);
    seen_metadata = true;
    if (!parse_metadata(r, entry)) return false;
  }
  f->tensors = calloc(n ? (size_t)n : 1, sizeof *f->tensors);
  if (!f->tensors) return diag_error(r->d, "%s: out of memory", r->path);
  cJSON_ArrayForEach(entry, root) {
    if (!strcmp(entry->string, ST_METADATA)) continue;
    StTensor *t = &f->tensors[f->n];
    size_t begin = 0;
    if (!parse_entry(r, entry, t, &begin)) return false;
    t->name = st_strdup(entry->string);
    if (!t->name) return diag_error(r->d, "%s: out of memory", r->path);
    t->offset = begin;
    t->data = base ? base + begin : NULL;
    f->n++;
  }
  if (!check_tensor_set(r, f->tensors, f->n)) return false;
  for (int i = 0; base && i < f->n; i++)
    if (f->tensors[i].dtype == DT_BOOL && !check_bool_data(r, &f->tensors[i])) return false;
  return true;
}

// Parses the file image buf[0, size) already in out->buffer (owned) or borrowed; with
// header_only, buf holds the first 8 + header length bytes of a file of `size` bytes (the
// first 8 only when that length is out of range).
static bool parse_image(const char *path, unsigned char *buf, size_t size, bool header_only, StFile *out,
                        Diag *d) {
  if (!(out->path = st_strdup(path))) {
    st_free(out);
    return diag_error(d, "%s: out of memory", path);
  }
  Reader r = {.path = path, .d = d};
  if (size < 8) {
    st_free(out);
    return diag_error(d, "%s: file is %zu bytes, too short for the 8-byte header length",
                      path, size);
  }
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--) hlen = hlen << 8 | buf[i];
  bool ok = true;
  if (hlen == 0) ok = diag_error(d, "%s: header length is 0", path);
  else if (hlen > ST_MAX_HEADER)
    ok = diag_error(d, "%s: header length %" PRIu64 " exceeds the 100 MB limit", path, hlen);
  else if (hlen > size - 8)
    ok = diag_error(d, "%s: header length %" PRIu64 " runs past the end of the file "
                    "(%zu bytes)", path, hlen, size);
  if (!ok) {
    st_free(out);
    return false;
  }
  const char *header = (const char *)buf + 8, *end = NULL;
  long nul = rt_json_find_nul(header, (size_t)hlen);  // cJSON would cut "x\u0000y" to "x"
  if (nul >= 0) {
    st_free(out);
    return diag_error(d, "%s: header byte %ld: a NUL character (\\u0000 or a zero byte) in a string: "
                      "tensor names cannot hold one", path, nul);
  }
  cJSON *root = cJSON_ParseWithLengthOpts(header, (size_t)hlen, &end, false);
  if (!root) {
    size_t at = end ? (size_t)(end - header) : 0;
    st_free(out);
    return diag_error(d, "%s: header is not valid JSON (error near header byte %zu)", path, at);
  }
  for (const char *p = end; ok && p < header + hlen; p++)
    if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
      ok = diag_error(d, "%s: header has stray bytes after the JSON object (header byte %zu)",
                      path, (size_t)(p - header));
  r.data_size = size - 8 - (size_t)hlen;
  ok = ok && parse_header(&r, root, header_only ? NULL : buf + 8 + hlen, out);
  out->data_start = 8 + (size_t)hlen;
  cJSON_Delete(root);
  if (!ok) st_free(out);
  return ok;
}

bool st_read(const char *path, StFile *out, Diag *d) {
  assert(path && out);
  memset(out, 0, sizeof *out);
  unsigned char *buf = NULL;
  size_t size = 0;
  if (!read_whole_file(path, &buf, &size, d)) return false;
  out->buffer = buf;
  out->size = size;
  return parse_image(path, buf, size, false, out, d);
}

bool st_open(const char *path, StFile *out, Diag *d) {
  assert(path && out);
  memset(out, 0, sizeof *out);
  FILE *fp = rt_open_read(path, d);  // a regular file: no FIFO, device or directory
  if (!fp) return false;
  struct stat sb;
  if (fstat(fileno(fp), &sb) != 0 || sb.st_size < 0) {
    int err = errno;
    fclose(fp);
    return diag_error(d, "%s: cannot stat: %s", path, strerror(err));
  }
  size_t size = (size_t)sb.st_size, head = size < 8 ? size : 8;
  unsigned char len[8] = {0};
  uint64_t hlen = 0;
  if (fread(len, 1, head, fp) == head)
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | len[i];
  if (hlen > ST_MAX_HEADER || hlen > size - head) hlen = 0;  // parse_image says what is wrong
  unsigned char *buf = malloc(8 + (size_t)hlen);
  if (!buf) {
    fclose(fp);
    return diag_error(d, "%s: out of memory reading the header", path);
  }
  memcpy(buf, len, 8);
  if (fread(buf + 8, 1, (size_t)hlen, fp) != hlen) {
    free(buf);
    fclose(fp);
    return diag_error(d, "%s: file shrank while reading its header", path);
  }
  bool ok = parse_image(path, buf, size, true, out, d);
  free(buf);  // the header: names were copied
  if (!ok) return fclose(fp), false;
  out->fp = fp;
  out->size = size;
  return true;
}

bool st_load(const StFile *f, const StTensor *t, void *dst, Diag *d) {
  if (t->data) {
    if (t->nbytes) memcpy(dst, t->data, t->nbytes);
    return true;
  }
  assert(f->fp);
  int fd = fileno(f->fp);
  size_t got = 0;
  while (got < t->nbytes) {
    ssize_t k = pread(fd, (char *)dst + got, t->nbytes - got, (off_t)(f->data_start + t->offset + got));
    if (k < 0 && errno == EINTR) continue;
    if (k < 0) return diag_error(d, "%s: tensor \"%s\": read error: %s", f->path, t->name, strerror(errno));
    if (k == 0)
      return diag_error(d, "%s: tensor \"%s\": the file shrank while it was open (%zu of %zu bytes read)",
                        f->path, t->name, got, t->nbytes);
    got += (size_t)k;
  }
  if (t->dtype != DT_BOOL) return true;
  Reader r = {.path = f->path, .d = d};
  return check_bool_data(&r, &(StTensor){.name = t->name, .nbytes = t->nbytes, .data = dst});
}

bool st_read_memory(const char *name, const void *data, size_t size, StFile *out, Diag *d) {
  assert(name && out && (data || !size));
  memset(out, 0, sizeof *out);  // buffer stays NULL: the image is borrowed, never freed
  out->size = size;
  return parse_image(name, (unsigned char *)(uintptr_t)data, size, false, out, d);
}

const StTensor *st_find(const StFile *f, const char *name) {
  for (int i = 0; i < f->n; i++)
    if (!strcmp(f->tensors[i].name, name)) return &f->tensors[i];
  return NULL;
}

void st_free(StFile *f) {
  if (!f) return;
  for (int i = 0; i < f->n; i++) free(f->tensors[i].name);
  free(f->tensors);
  free(f->buffer);
  free(f->path);
  if (f->fp) fclose(f->fp);
  memset(f, 0, sizeof *f);
}

// --- writing ---------------------------------------------------------------------------


static bool check_for_write(const char *path, const StTensor *ts, int n, Diag *d) {
  for (int i = 0; i < n; i++) {
    const StTensor *t = &ts[i];
    if (!t->name || !*t->name || !strcmp(t->name, ST_METADATA))
      return diag_error(d, "%s: tensor %d: name \"%s\" is not allowed", path, i,
                        t->name ? t->name : "(null)");
    if (!check_name_utf8(path, t->name, d)) return false;
    if (t->rank < 0 || t->rank > ST_MAX_RANK || (unsigned)t->dtype >= DT_COUNT)
      return diag_error(d, "%s: tensor \"%s\": bad rank %d or dtype %d", path, t->name,
                        t->rank, (int)t->dtype);
    for (int k = 0; k < t->rank; k++)
      if (t->shape[k] < 0)
        return diag_error(d, "%s: tensor \"%s\": shape[%d] is %" PRId64, path, t->name, k,
                          t->shape[k]);
    size_t need;
    char sh[256];
    format_shape(sh, sizeof sh, t->rank, t->shape);
    if (!shape_nbytes(t->dtype, t->rank, t->shape, &need))
      return diag_error(d, "%s: tensor \"%s\": shape %s has too many elements", path,
                        t->name, sh);
    if (t->nbytes != need)
      return diag_error(d, "%s: tensor \"%s\": nbytes is %zu but %s %s needs %zu", path,
                        t->name, t->nbytes, dt_st_name(t->dtype), sh, need);
    if (need && !t->data)
      return diag_error(d, "%s: tensor \"%s\": data is NULL", path, t->name);
  }
  if (n < 2) return true;
  const StTensor **order = malloc((size_t)n * sizeof *order);
  if (!order) return diag_error(d, "%s: out of memory", path);
  for (int i = 0; i < n; i++) order[i] = &ts[i];
  qsort(order, (size_t)n, sizeof *order, cmp_by_name);
  bool ok = true;
  for (int i = 1; i < n && ok; i++)
    if (!strcmp(order[i - 1]->name, order[i]->name))
      ok = diag_error(d, "%s: duplicate tensor name \"%s\"", path, order[i]->name);
  free(order);
  return ok;
}

// {"name":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},...}, then spaces so that
// the data starts 8-byte aligned. Offsets are contiguous, in the given order. Into *p (a
// string of *len bytes, freed by the caller); false when out of memory.
static bool build_header(const StTensor *ts, int n, char **p, size_t *len) {
  FILE *f = open_memstream(p, len);
  if (!f) return false;
  fputc('{', f);
  size_t offset = 0;
  for (int i = 0; i < n; i++) {
    const StTensor *t = &ts[i];
    if (i) fputc(',', f);
    rt_json_put_string(f, t->name);
    fprintf(f, ":{\"dtype\":\"%s\",\"shape\":[", dt_st_name(t->dtype));
    for (int k = 0; k < t->rank; k++) fprintf(f, "%s%" PRId64, k ? "," : "", t->shape[k]);
    fprintf(f, "],\"data_offsets\":[%zu,%zu]}", offset, offset + t->nbytes);
    offset += t->nbytes;
  }
  fputc('}', f);
  bool ok = fflush(f) == 0;
  for (size_t at = *len; ok && (8 + at) % 8; at++) ok = fputc(' ', f) != EOF;
  ok = fclose(f) == 0 && ok;
  if (!ok) {
    free(*p);
    *p = NULL;
  }
  return ok;
}

// Length, header, data.
typedef struct Contents {
  const char *header;
  size_t header_len;
  const StTensor *ts;
  int n;
} Contents;

static bool write_contents(FILE *fp, void *ctx) {
  const Contents *c = ctx;
  unsigned char len_le[8];
  for (int i = 0; i < 8; i++) len_le[i] = (unsigned char)((uint64_t)c->header_len >> (8 * i));
  if (fwrite(len_le, 1, 8, fp) != 8 || fwrite(c->header, 1, c->header_len, fp) != c->header_len)
    return false;
  for (int i = 0; i < c->n; i++)
    if (c->ts[i].nbytes && fwrite(c->ts[i].data, 1, c->ts[i].nbytes, fp) != c->ts[i].nbytes) return false;
  return true;
}

bool st_write(const char *path, const StTensor *tensors, int n, Diag *d) {
  assert(path && n >= 0 && (n == 0 || tensors));
  if (!check_for_write(path, tensors, n, d)) return false;
  char *header = NULL;
  size_t len = 0;
  if (!build_header(tensors, n, &header, &len))
    return diag_error(d, "%s: out of memory building the header", path);
  bool ok = rt_write_atomic(path, write_contents, &(Contents){header, len, tensors, n}, d);
  free(header);
  return ok;
}
