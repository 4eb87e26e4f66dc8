// The compile cache's file store (docs/cache.md): entries of bytes named by a key, in one
// directory, written atomically (temporary + rename), checked by a checksum when read
// (a corrupt or truncated entry is removed and reported as a miss), touched when used and
// evicted least recently used first once the directory passes its size limit. Several
// processes may share a directory: every step tolerates another process's writes and
// removals. It knows nothing of what the bytes are (codegen stores object code).
#ifndef KILN_CACHE_H
#define KILN_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "runtime/diag.h"

#define RT_CACHE_DEFAULT_BYTES (1ull << 30)  // 1 GiB
#define RT_CACHE_KEY_CHARS 32                // a key: 128 bits in hex

typedef struct RtCacheOptions {
  const char *dir;     // NULL: no cache
  uint64_t max_bytes;  // the size limit (0: RT_CACHE_DEFAULT_BYTES)
  FILE *log;           // notes (a corrupt entry, a failed write), or NULL
} RtCacheOptions;

// ---- keys: a 128-bit hash of everything that changes what an entry holds ----------------
typedef struct RtHash {
  uint64_t a, b;  // two independent 64-bit hashes
} RtHash;
RtHash rt_hash_start(void);
void rt_hash_bytes(RtHash *h, const void *p, size_t n);
void rt_hash_str(RtHash *h, const char *s);  // the string and its end
void rt_hash_u64(RtHash *h, uint64_t v);
void rt_hash_hex(const RtHash *h, char out[RT_CACHE_KEY_CHARS + 1]);

// ---- the store ---------------------------------------------------------------------------
// The directory can hold the cache: created if missing (with its parents), a directory, and
// writable. False with a message naming it otherwise.
bool rt_cache_usable(const char *dir, Diag *d);
// The entry `key`: its bytes (malloc'd, *size) when present and intact, and marked as used
// now; NULL on a miss. A corrupt or truncated entry is removed and noted on c->log.
void *rt_cache_get(const RtCacheOptions *c, const char *key, size_t *size);
// Stores bytes as the entry `key` (replacing one another process may be writing); a failure
// is noted on c->log and returns false: the cache is an optimisation, never an error.
bool rt_cache_put(const RtCacheOptions *c, const char *key, const void *data, size_t size);
// Removes entries, least recently used first, until the directory holds at most max_bytes.
void rt_cache_trim(const RtCacheOptions *c);

typedef struct RtCacheInfo {
  int64_t entries;
  uint64_t bytes;
} RtCacheInfo;
bool rt_cache_info(const char *dir, RtCacheInfo *info, Diag *d);
// Removes every entry (and temporaries left by killed writers); *removed counts entries.
bool rt_cache_clear(const char *dir, int64_t *removed, Diag *d);

#endif
