#!/bin/bash
# Not a CI test: needs root for the tmpfs (see docs/RELIABILITY.md, "A real full filesystem").
# Run from the repository root after building the guests and the host.
# As full-tmpfs-delete.sh, but frees space out of band (removes DIR/../filler,
# a 2 MB file made beforehand) after the first 503. Usage: full-tmpfs-free.sh BIN DIR
BIN=$1; DIR=$2; PORT=39472
$BIN up -f spin.toml --data-dir "$DIR/data" --listen 127.0.0.1:$PORT > "$DIR/../host2.log" 2>&1 &
PID=$!
for i in $(seq 1 600); do curl -s -o /dev/null http://127.0.0.1:$PORT/readyz && break; sleep 0.2; done
VAL=$(head -c 60000 /dev/zero | tr '\0' x)
n=0
while [ $n -lt 400 ]; do
  code=$(curl -s -o "${TMPDIR:-/tmp}/ostore-full.body" -w '%{http_code}' -X POST http://127.0.0.1:$PORT/store -d "{\"key\":\"k$n\",\"value\":\"$VAL\"}")
  [ "$code" != 200 ] && break
  n=$((n+1))
done
echo "stored $n keys; then $code $(head -c 120 "${TMPDIR:-/tmp}/ostore-full.body")"
rm "$DIR/../filler"
start=$(date +%s.%N)
for i in $(seq 1 50); do
  code=$(curl -s -o /dev/null -w '%{http_code}' -X POST http://127.0.0.1:$PORT/store -d "{\"key\":\"again\",\"value\":\"v\"}")
  [ "$code" = 200 ] && break; sleep 0.1
done
echo "after removing the filler: write answered $code after $(echo "$(date +%s.%N) - $start" | bc) s"
echo "readyz: $(curl -s -w ' %{http_code}' http://127.0.0.1:$PORT/readyz)"
d=0; for i in $(seq 0 9); do c=$(curl -s -o /dev/null -w '%{http_code}' -X DELETE http://127.0.0.1:$PORT/store/k$i); [ "$c" = 200 ] && d=$((d+1)); done
echo "deletes: $d of 10"
ok=0; for i in $(seq 10 $((n-1))); do [ "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$PORT/store/k$i)" = 200 ] && ok=$((ok+1)); done
echo "acknowledged keys still read: $ok of $((n-10))"
echo "health log lines: $(grep -v stats $DIR/../host2.log | grep -c 'writes failing'), recovered: $(grep -c 'writes recovered' $DIR/../host2.log)"
kill $PID; wait $PID 2>/dev/null
