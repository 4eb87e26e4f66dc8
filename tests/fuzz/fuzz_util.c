// Helpers of the libFuzzer targets (fuzz_util.h): splitting an input into named parts and
// writing files to a per-process temporary directory that is removed at exit.
#include "tests/fuzz/fuzz_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char g_dir[4096];

static const uint8_t *find(const uint8_t *p, const uint8_t *end, const char *s) {
  size_t n = strlen(s);
  for (; (size_t)(end - p) >= n; p++)
    if (!memcmp(p, s, n)) return p;
  return NULL;
}

int fuzz_split(const uint8_t *data, size_t size, FuzzPart *parts, int max) {
  const uint8_t *p = data, *end = data + size;
  int n = 0;
  parts[0].name[0] = 0;
  for (;;) {
    FuzzPart *part = &parts[n++];
    const uint8_t *sep = n < max ? find(p, end, FUZZ_SEPARATOR) : NULL;
    part->data = p;
    part->size = (size_t)((sep ? sep : end) - p);
    if (!sep) return n;
    p = sep + strlen(FUZZ_SEPARATOR);  // the next part's name line
    const uint8_t *nl = memchr(p, '\n', (size_t)(end - p));
    size_t len = (size_t)((nl ? nl : end) - p);
    FuzzPart *next = &parts[n];
    size_t keep = len < sizeof next->name ? len : sizeof next->name - 1;
    memcpy(next->name, p, keep);
    next->name[keep] = 0;
    p = nl ? nl + 1 : end;
  }
}

char *fuzz_strndup(const FuzzPart *p) {
  char *s = malloc(p->size + 1);
  if (!s) abort();
  memcpy(s, p->data, p->size);
  s[p->size] = 0;
  return s;
}

int fuzz_name_ok(const char *name) {
  size_t len = strlen(name);
  if (len == 0 || len > 63 || !strcmp(name, ".") || !strcmp(name, "..")) return 0;
  return strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == len;
}

static void remove_dir(void) {
  if (g_dir[0]) rmdir(g_dir);  // the targets remove their files after each input
}

void fuzz_write(const char *name, const void *data, size_t size, char *path, size_t cap) {
  if (!g_dir[0]) {
    const char *tmp = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/kiln-fuzz-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(g_dir)) {
      perror(g_dir);
      abort();
    }
    atexit(remove_dir);
  }
  if ((size_t)snprintf(path, cap, "%s/%s", g_dir, name) >= cap) abort();
  FILE *f = fopen(path, "wb");
  if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
    perror(path);
    abort();
  }
}

void fuzz_check(const char *what, bool ok, const Diag *d) {
  if (getenv("KILN_FUZZ_VERBOSE")) fprintf(stderr, "%s: %s\n", what, ok ? "ok" : d->msg);
  if (!ok && (!d->set || !d->msg[0])) {
    fprintf(stderr, "%s failed without a message\n", what);
    abort();
  }
}
