#!/bin/bash
# The compile cache (docs/cache.md): a warm run gives the bits of a cold run and of --no-cache
# (run, train) and compiles nothing; a graph edit (one --set) compiles only the kernels it
# changed; a corrupt or truncated entry is found, recompiled and rewritten; two processes
# filling one cache both succeed; --cache-size keeps the directory under its limit; kiln
# cache info and clear; a cache directory that is a file is a warning, not a failure.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
vqa=$root/models/visualbert-vqa.json
c=$work/cache
"$kiln" init "$vqa" "${tiny[@]}" --set num_labels=7 -o "$work/w.safetensors"
"$py" "$here/parity/make_case.py" --variant vqa --seed 3 -o "$work/in.safetensors" "${tiny[@]}" \
  --set num_labels=7 >/dev/null
run() {  # NAME, extra flags...: kiln run into $work/NAME.safetensors; prints "HITS MISSES"
  local name=$1; shift
  "$kiln" run "$vqa" "${tiny[@]}" --set num_labels=7 --weights "$work/w.safetensors" --inputs "$work/in.safetensors" \
    -o "$work/$name.safetensors" --threads 2 --verbose "$@" 2>"$work/$name.err" || { cat "$work/$name.err"; fail "run $name"; }
  sed -n 's/.*cache: \([0-9]*\) hits, \([0-9]*\) misses.*/\1 \2/p' "$work/$name.err"
}
field() { awk -v k="$1:" '$1 == k { print $2 }' <<<"$2"; }

# Cold, warm, without: the same bits; warm compiles nothing, --no-cache touches nothing.
read -r hits misses <<<"$(run cold --cache-dir "$c")"
((hits == 0 && misses > 0)) || fail "cold run: $hits hits, $misses misses"
total=$misses
read -r hits misses <<<"$(run warm --cache-dir "$c")"
((hits == total && misses == 0)) || fail "warm run: $hits hits, $misses misses (of $total)"
info=$("$kiln" cache info --cache-dir "$c")
[[ $(field dir "$info") == "$c" && $(field entries "$info") == "$total" ]] || fail "cache info: $info"
[[ $(field limit_bytes "$info") == $((1 << 30)) ]] || fail "cache info: default limit: $info"
bytes=$(field bytes "$info")
run none --cache-dir "$c" --no-cache >/dev/null
cmp "$work/cold.safetensors" "$work/warm.safetensors" || fail "warm output differs from cold"
cmp "$work/cold.safetensors" "$work/none.safetensors" || fail "--no-cache output differs from cold"
[[ $("$kiln" cache info --cache-dir "$c") == "$info" ]] || fail "--no-cache changed the cache"
echo "ok: cold $total misses, warm $total hits, outputs equal to --no-cache"

# A graph edit: another head size changes the classifier's kernels, no others.
"$kiln" init "$vqa" "${tiny[@]}" --set num_labels=9 -o "$work/w9.safetensors"
"$py" "$here/parity/make_case.py" --variant vqa --seed 3 -o "$work/in9.safetensors" "${tiny[@]}" \
  --set num_labels=9 >/dev/null
edit() {  # NAME, extra flags...: run with num_labels=9
  local name=$1; shift
  "$kiln" run "$vqa" "${tiny[@]}" --set num_labels=9 --weights "$work/w9.safetensors" --inputs "$work/in9.safetensors" \
    -o "$work/$name.safetensors" --threads 2 --verbose --cache-dir "$c" "$@" 2>"$work/$name.err" ||
    { cat "$work/$name.err"; fail "run $name"; }
  sed -n 's/.*cache: \([0-9]*\) hits, \([0-9]*\) misses.*/\1 \2/p' "$work/$name.err"
}
read -r hits misses <<<"$(edit edit9)"
((misses > 0 && hits > 0 && misses * 4 < hits + misses)) || fail "edit: $hits hits, $misses misses"
read -r hits2 misses2 <<<"$(edit edit9b)"
((misses2 == 0)) || fail "edit again: $hits2 hits, $misses2 misses"
cmp "$work/edit9.safetensors" "$work/edit9b.safetensors" || fail "edit: warm output differs"
echo "ok: num_labels 7 -> 9: $misses misses, $hits hits"

# kiln train (the training program: forward, backward, update): cold, warm, --no-cache.
"$py" "$here/parity/make_case.py" --variant vqa --seed 5 -o "$work/data.safetensors" "${tiny[@]}" \
  --set batch=8 --set num_labels=7 >/dev/null
for k in cold warm none; do
  flags=(--cache-dir "$c"); [[ $k == none ]] && flags+=(--no-cache)
  "$kiln" train "$vqa" "${tiny[@]}" --set num_labels=7 --weights "$work/w.safetensors" --data "$work/data.safetensors" \
    --steps 3 --threads 2 -o "$work/train-$k.safetensors" "${flags[@]}" 2>"$work/train.err" || { cat "$work/train.err"; fail "train $k"; }
done
cmp "$work/train-cold.safetensors" "$work/train-warm.safetensors" || fail "train: warm differs from cold"
cmp "$work/train-cold.safetensors" "$work/train-none.safetensors" || fail "train: --no-cache differs"
out=$("$kiln" bench "$vqa" "${tiny[@]}" --set num_labels=7 --train --iters 1 --threads 2 --cache-dir "$c")
[[ $(field cache_misses "$out") == 0 && $(field cache_hits "$out") -gt 0 ]] || fail "bench --train warm: $out"
echo "ok: train cold == warm == --no-cache; bench --train warm: $(field cache_hits "$out") hits"

# A flipped byte, then a truncated entry: found, recompiled, rewritten; the same outputs.
"$kiln" cache clear --cache-dir "$c" >/dev/null
run refill --cache-dir "$c" >/dev/null
entries=("$c"/*.entry)
victim=${entries[0]}
"$py" -c 'import sys; p = sys.argv[1]; b = bytearray(open(p, "rb").read()); b[len(b) // 2] ^= 0x40; open(p, "wb").write(b)' "$victim"
read -r hits misses <<<"$(run flipped --cache-dir "$c")"
[[ $misses == 1 ]] || fail "flipped byte: $hits hits, $misses misses"
grep -q "corrupt or truncated entry" "$work/flipped.err" || fail "flipped byte: no note: $(cat "$work/flipped.err")"
cmp "$work/cold.safetensors" "$work/flipped.safetensors" || fail "flipped byte: output differs"
for e in "$c"/*.entry; do truncate -s 40 "$e"; break; done
read -r hits misses <<<"$(run truncated --cache-dir "$c")"
[[ $misses == 1 ]] || fail "truncated entry: $hits hits, $misses misses"
cmp "$work/cold.safetensors" "$work/truncated.safetensors" || fail "truncated entry: output differs"
read -r hits misses <<<"$(run rewritten --cache-dir "$c")"
[[ $misses == 0 ]] || fail "after recompiling: $hits hits, $misses misses"
echo "ok: a flipped byte and a truncated entry are recompiled and rewritten"

# Two processes filling one empty cache at once.
"$kiln" cache clear --cache-dir "$c" | grep -q "^removed: [1-9]" || fail "cache clear"
[[ $(field entries "$("$kiln" cache info --cache-dir "$c")") == 0 ]] || fail "cache not empty after clear"
run par1 --cache-dir "$c" >/dev/null & p1=$!
run par2 --cache-dir "$c" >/dev/null & p2=$!
wait $p1 || fail "concurrent run 1"
wait $p2 || fail "concurrent run 2"
cmp "$work/cold.safetensors" "$work/par1.safetensors" || fail "concurrent run 1: output differs"
cmp "$work/cold.safetensors" "$work/par2.safetensors" || fail "concurrent run 2: output differs"
read -r hits misses <<<"$(run after --cache-dir "$c")"
((misses == 0 && hits == total)) || fail "after the concurrent runs: $hits hits, $misses misses"
ls "$c" | grep -v '\.entry$' && fail "temporaries left in the cache"
echo "ok: two processes filled one cache"

# The size limit: entries past it go, least recently used first.
limit=$((bytes / 2))
edit evict --cache-size "$limit" >/dev/null
info=$("$kiln" cache info --cache-dir "$c" --cache-size "$limit")
(($(field bytes "$info") <= limit)) || fail "--cache-size $limit: $info"
[[ $(field limit_bytes "$info") == "$limit" ]] || fail "cache info --cache-size: $info"
# The run just now used its own kernels last: they are the ones kept.
read -r hits misses <<<"$(edit evict2)"
((hits > 0)) || fail "after eviction the newest entries should remain: $hits hits, $misses misses"
echo "ok: --cache-size $limit keeps $(field bytes "$info") bytes"

# A cache directory that cannot be one: a warning, and the run works uncached.
touch "$work/afile"
read -r hits misses <<<"$(run badcache --cache-dir "$work/afile")"
grep -q "warning: compile cache $work/afile" "$work/badcache.err" || fail "no warning: $(cat "$work/badcache.err")"
cmp "$work/cold.safetensors" "$work/badcache.safetensors" || fail "bad cache dir: output differs"
code() { set +e; "$@" >/dev/null 2>"$work/err"; echo $?; set -e; }
[[ $(code "$kiln" cache) == 2 ]] || fail "kiln cache without a subcommand"
[[ $(code "$kiln" cache list --cache-dir "$c") == 2 ]] || fail "kiln cache list"
[[ $(code "$kiln" run "$vqa" --cache-size 12Q) == 2 ]] || fail "--cache-size 12Q"
[[ $(code "$kiln" cache info --cache-dir "$work/afile") == 1 ]] || fail "cache info on a file"
echo "all cache checks passed"
