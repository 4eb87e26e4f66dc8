// Reading RtTuning's settings by name (see tuning.h): the one place that knows the
// variables' names and formats. It never touches the environment itself: the entry point
// passes the lookup. Also the memory limit's format and check, which kiln and compiled
// executables share.
#include "runtime/tuning.h"

#include <errno.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

// The variable as an integer in [lo, hi], or false (unset, empty, malformed, out of range).
static bool read_int(RtLookup lookup, const char *name, long long lo, long long hi, long long *out) {
  const char *s = lookup(name);
  if (!s || !*s) return false;
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || *end || v < lo || v > hi) return false;
  *out = v;
  return true;
}

static bool is_set(RtLookup lookup, const char *name) {
  const char *s = lookup(name);
  return s && *s;
}

void rt_tuning_read(RtTuning *t, RtLookup lookup) {
  const char *cpu = lookup("KILN_CPU"), *features = lookup("KILN_CPU_FEATURES");
  if (cpu && *cpu) t->cpu = strcmp(cpu, "native") ? cpu : NULL;
  if (features && *features) t->features = features;
  long long v;
  if (read_int(lookup, "KILN_NUM_THREADS", 1, 1024, &v)) t->threads = (int)v;
  if (read_int(lookup, "KILN_GEMM_MR", 1, 64, &v)) t->gemm_mr = (int)v;
  if (read_int(lookup, "KILN_GEMM_NV", 1, 64, &v)) t->gemm_nv = (int)v;
  if (read_int(lookup, "KILN_GEMM_UNROLL", 1, 64, &v)) t->gemm_unroll = (int)v;
  if (read_int(lookup, "KILN_GEMM_KC", 1, INT32_MAX, &v)) t->gemm_kc = v;
  if (read_int(lookup, "KILN_GEMM_L2", 1, INT64_MAX, &v)) t->gemm_l2_floats = v;
  if (read_int(lookup, "KILN_GEMM_MIN_ITEMS", 1, INT32_MAX, &v)) t->gemm_min_items = v;
  if (read_int(lookup, "KILN_GEMM_FUSE", 0, 1, &v)) t->gemm_no_fuse = v == 0;
  if (read_int(lookup, "KILN_GEMM_PREFETCH", 0, 1, &v)) t->gemm_no_prefetch = v == 0;
  if (read_int(lookup, "KILN_GEMM_PF_LOCALITY", 0, 3, &v)) t->gemm_pf_locality = (int)v + 1;
  if (is_set(lookup, "KILN_GEMM_DEBUG")) t->gemm_debug = true;
  if (read_int(lookup, "KILN_ATTN_ROWS", 1, INT32_MAX, &v)) t->attn_rows = (int)v;
  const char *poison = lookup("KILN_POISON_BUFFERS");
  if (poison && *poison == '1') t->poison_buffers = true;
  const char *perf = lookup("KILN_PERF_JIT");
  if (perf && *perf && strcmp(perf, "0") != 0) t->perf_jit = true;
}

uint64_t rt_physical_memory(void) {
  long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGE_SIZE);
  return pages > 0 && size > 0 ? (uint64_t)pages * (uint64_t)size : 0;
}

bool rt_parse_size(const char *s, uint64_t *out) {
  char *end;
  errno = 0;
  if (*s < '0' || *s > '9') return false;
  unsigned long long v = strtoull(s, &end, 10);
  const char *units = "KMGT", *u = *end ? strchr(units, *end) : NULL;
  int shift = u ? 10 * (int)(u - units + 1) : 0;
  if (errno || end == s || (*end && (!u || end[1])) || v == 0 || v > (UINT64_MAX >> shift))
    return false;
  *out = (uint64_t)v << shift;
  return true;
}

bool rt_memory_fits(uint64_t bytes, uint64_t max_memory, const char *what, Diag *d) {
  uint64_t limit = max_memory ? max_memory : rt_physical_memory();
  if (!limit || bytes <= limit) return true;
  return diag_error(d, "%s needs %llu bytes of memory (%.1f MiB), more than the limit of %llu "
                    "bytes (%s); raise it with --max-memory SIZE", what, (unsigned long long)bytes,
                    (double)bytes / (1 << 20), (unsigned long long)limit,
                    max_memory ? "--max-memory" : "the machine's physical memory");
}
