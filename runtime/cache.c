// The compile cache's file store (see cache.h): DIR/KEY.entry files, each a header (magic,
// payload size, checksum of key and payload) and the payload, written by
// rt_write_atomic_unsynced (a crash's torn entry fails its checksum: a miss, removed); a
// hit sets the entry's mtime to now, and trimming removes the oldest mtimes first.
#include "runtime/cache.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/files.h"

#define MAGIC "KILNC001"
#define SUFFIX ".entry"

typedef struct Header {
  char magic[8];
  uint64_t size;      // payload bytes
  uint64_t sum[2];    // RtHash of the key and the payload
} Header;

// ---- keys ------------------------------------------------------------------------------------
RtHash rt_hash_start(void) { return (RtHash){14695981039346656037ull, 0x9E3779B97F4A7C15ull}; }

void rt_hash_bytes(RtHash *h, const void *p, size_t n) {
  const unsigned char *s = p;
  uint64_t a = h->a, b = h->b;
  for (size_t i = 0; i < n; i++) {
    a = (a ^ s[i]) * 1099511628211ull;                    // FNV-1a
    b = (b + s[i] + 1) * 0xBF58476D1CE4E5B9ull, b ^= b >> 31;  // a multiply-xorshift
  }
  h->a = a, h->b = b;
}

void rt_hash_str(RtHash *h, const char *s) { rt_hash_bytes(h, s, strlen(s) + 1); }

void rt_hash_u64(RtHash *h, uint64_t v) { rt_hash_bytes(h, &v, sizeof v); }

void rt_hash_hex(const RtHash *h, char out[RT_CACHE_KEY_CHARS + 1]) {
  snprintf(out, RT_CACHE_KEY_CHARS + 1, "%016llx%016llx", (unsigned long long)h->a, (unsigned long long)h->b);
}

static void checksum(const char *key, const void *data, size_t size, uint64_t sum[2]) {
  RtHash h = rt_hash_start();
  rt_hash_str(&h, key);
  rt_hash_bytes(&h, data, size);
  sum[0] = h.a, sum[1] = h.b;
}

// ---- the store -------------------------------------------------------------------------------
static void note(const RtCacheOptions *c, const char *fmt, const char *a, const char *b) {
  if (!c->log) return;
  fprintf(c->log, "kiln: cache: ");
  fprintf(c->log, fmt, a, b);
  fputc('\n', c->log);
}

static char *entry_path(const char *dir, const char *key) {
  size_t n = strlen(dir) + strlen(key) + sizeof SUFFIX + 2;
  char *path = malloc(n);
  if (path) snprintf(path, n, "%s/%s%s", dir, key, SUFFIX);
  return path;
}

bool rt_cache_usable(const char *dir, Diag *d) {
  char path[4096];
  if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path)
    return diag_error(d, "%s: the path is too long", dir);
  // Its parents, then itself: each created if missing (another process may create it too).
  for (char *p = path + 1;; p++) {
    bool end = *p == '\0';
    if (*p != '/' && !end) continue;
    *p = '\0';
    if (mkdir(path, 0777) != 0 && errno != EEXIST)
      return diag_error(d, "%s: cannot create the directory %s: %s", dir, path, strerror(errno));
    if (end) break;
    *p = '/';
  }
  struct stat sb;
  if (stat(dir, &sb) != 0) return diag_error(d, "%s: cannot stat: %s", dir, strerror(errno));
  if (!S_ISDIR(sb.st_mode)) return diag_error(d, "%s: not a directory", dir);
  if (access(dir, W_OK | X_OK) != 0) return diag_error(d, "%s: not writable: %s", dir, strerror(errno));
  return true;
}

void *rt_cache_get(const RtCacheOptions *c, const char *key, size_t *size) {
  char *path = entry_path(c->dir, key);
  if (!path) return NULL;
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {  // a miss
    free(path);
    return NULL;
  }
  struct stat sb;
  Header h;
  char *data = NULL;
  bool ok = fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size >= (off_t)sizeof h &&
            read(fd, &h, sizeof h) == (ssize_t)sizeof h && memcmp(h.magic, MAGIC, 8) == 0 &&
            h.size == (uint64_t)sb.st_size - sizeof h && (data = malloc(h.size + 1)) != NULL;
  for (size_t got = 0; ok && got < h.size;) {
    ssize_t r = read(fd, data + got, h.size - got);
    if (r <= 0) ok = false;
    else got += (size_t)r;
  }
  close(fd);
  uint64_t sum[2];
  if (ok) checksum(key, data, h.size, sum);
  if (ok && (sum[0] != h.sum[0] || sum[1] != h.sum[1])) ok = false;
  if (!ok) {
    // Removed so that the recompiled entry replaces it (another process may have already).
    note(c, "%s: corrupt or truncated entry, removed; compiling it again%s", path, "");
    unlink(path);
    free(data);
    free(path);
    return NULL;
  }
  utimensat(AT_FDCWD, path, NULL, 0);  // used now: last in line for eviction
  free(path);
  *size = h.size;
  return data;
}

typedef struct Entry {
  const char *key;
  const void *data;
  size_t size;
} Entry;

static bool write_entry(FILE *f, void *ctx) {
  const Entry *e = ctx;
  Header h = {.size = e->size};
  memcpy(h.magic, MAGIC, 8);
  checksum(e->key, e->data, e->size, h.sum);
  return fwrite(&h, sizeof h, 1, f) == 1 && (e->size == 0 || fwrite(e->data, e->size, 1, f) == 1);
}

bool rt_cache_put(const RtCacheOptions *c, const char *key, const void *data, size_t size) {
  char *path = entry_path(c->dir, key);
  if (!path) return false;
  Diag d = {0};
  bool ok = rt_write_atomic_unsynced(path, write_entry, &(Entry){key, data, size}, &d);
  if (!ok) note(c, "cannot store an entry: %s%s", d.msg, "");
  free(path);
  return ok;
}

// ---- listing, trimming, clearing -------------------------------------------------------------
typedef struct Listed {
  char *name;
  uint64_t bytes;
  struct timespec used;
} Listed;

static bool is_entry(const char *name) {
  size_t n = strlen(name), s = strlen(SUFFIX);
  return n > s && strcmp(name + n - s, SUFFIX) == 0;
}

static bool is_temporary(const char *name) { return strstr(name, SUFFIX ".tmp.") != NULL; }

// The entries of dir (names malloc'd); false with d set when it cannot be read.
static bool list_entries(const char *dir, Listed **out, int64_t *n, Diag *d) {
  *out = NULL, *n = 0;
  DIR *dp = opendir(dir);
  if (!dp) return diag_error(d, "%s: cannot read the cache directory: %s", dir, strerror(errno));
  int64_t cap = 0;
  bool ok = true;
  for (struct dirent *e; ok && (e = readdir(dp));) {
    if (!is_entry(e->d_name)) continue;
    struct stat sb;
    if (fstatat(dirfd(dp), e->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(sb.st_mode))
      continue;  // removed meanwhile by another process
    if (*n == cap) {
      cap = cap ? 2 * cap : 64;
      Listed *grown = realloc(*out, (size_t)cap * sizeof **out);
      if (!grown) ok = diag_error(d, "out of memory");
      else *out = grown;
    }
    char *name = ok ? strdup(e->d_name) : NULL;
    if (ok && !name) ok = diag_error(d, "out of memory");
    if (ok) (*out)[(*n)++] = (Listed){name, (uint64_t)sb.st_size, sb.st_mtim};
  }
  closedir(dp);
  return ok;
}

static void free_listed(Listed *v, int64_t n) {
  for (int64_t i = 0; i < n; i++) free(v[i].name);
  free(v);
}

static int by_use(const void *pa, const void *pb) {
  const Listed *a = pa, *b = pb;
  if (a->used.tv_sec != b->used.tv_sec) return a->used.tv_sec < b->used.tv_sec ? -1 : 1;
  if (a->used.tv_nsec != b->used.tv_nsec) return a->used.tv_nsec < b->used.tv_nsec ? -1 : 1;
  return strcmp(a->name, b->name);
}

void rt_cache_trim(const RtCacheOptions *c) {
  uint64_t limit = c->max_bytes ? c->max_bytes : RT_CACHE_DEFAULT_BYTES;
  Listed *v;
  int64_t n;
  if (!list_entries(c->dir, &v, &n, NULL)) return;
  uint64_t total = 0;
  for (int64_t i = 0; i < n; i++) total += v[i].bytes;
  if (total > limit) qsort(v, (size_t)n, sizeof *v, by_use);
  int dfd = open(c->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  for (int64_t i = 0; dfd >= 0 && i < n && total > limit; i++) {
    // Gone already (another process trimmed it) counts as removed too.
    if (unlinkat(dfd, v[i].name, 0) == 0 || errno == ENOENT) total -= v[i].bytes;
  }
  if (dfd >= 0) close(dfd);
  free_listed(v, n);
}

bool rt_cache_info(const char *dir, RtCacheInfo *info, Diag *d) {
  *info = (RtCacheInfo){0};
  struct stat sb;
  if (stat(dir, &sb) != 0 && errno == ENOENT) return true;  // nothing cached yet
  Listed *v;
  int64_t n;
  if (!list_entries(dir, &v, &n, d)) return false;
  info->entries = n;
  for (int64_t i = 0; i < n; i++) info->bytes += v[i].bytes;
  free_listed(v, n);
  return true;
}

bool rt_cache_clear(const char *dir, int64_t *removed, Diag *d) {
  *removed = 0;
  struct stat sb;
  if (stat(dir, &sb) != 0 && errno == ENOENT) return true;
  DIR *dp = opendir(dir);
  if (!dp) return diag_error(d, "%s: cannot read the cache directory: %s", dir, strerror(errno));
  bool ok = true;
  for (struct dirent *e; (e = readdir(dp));) {
    if (!is_entry(e->d_name) && !is_temporary(e->d_name)) continue;  // not kiln's: left alone
    if (unlinkat(dirfd(dp), e->d_name, 0) == 0) *removed += is_entry(e->d_name);
    else if (errno != ENOENT && ok)
      ok = diag_error(d, "%s/%s: cannot remove: %s", dir, e->d_name, strerror(errno));
  }
  closedir(dp);
  return ok;
}
