// `kiln cache info|clear`: what the compile cache holds (directory, entries, bytes, limit)
// and emptying it (runtime/cache.c; docs/cache.md).
#include <stdio.h>
#include <string.h>

#include "app/cli.h"
#include "runtime/cache.h"

int cmd_cache(const CliOptions *o) {
  bool info = strcmp(o->model, "info") == 0, clear = strcmp(o->model, "clear") == 0;
  if (!info && !clear) {
    fprintf(stderr, "kiln: unknown cache subcommand \"%s\" (there are: info, clear)\n", o->model);
    return EXIT_USAGE;
  }
  if (!o->cache_dir) {
    fprintf(stderr, "kiln: cache: no cache directory (neither --cache-dir, XDG_CACHE_HOME nor HOME is set)\n");
    return EXIT_USER;
  }
  Diag d = {0};
  if (clear) {
    int64_t removed;
    if (!rt_cache_clear(o->cache_dir, &removed, &d)) {
      cli_error(&d);
      return EXIT_USER;
    }
    printf("removed: %lld entries from %s\n", (long long)removed, o->cache_dir);
    return 0;
  }
  RtCacheInfo ci;
  if (!rt_cache_info(o->cache_dir, &ci, &d)) {
    cli_error(&d);
    return EXIT_USER;
  }
  uint64_t limit = o->cache_bytes ? o->cache_bytes : RT_CACHE_DEFAULT_BYTES;
  printf("dir: %s\nentries: %lld\nbytes: %llu\nlimit_bytes: %llu\n", o->cache_dir, (long long)ci.entries,
         (unsigned long long)ci.bytes, (unsigned long long)limit);
  return 0;
}
