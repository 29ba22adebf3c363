#!/bin/bash
# Not a CI test: needs root for the tmpfs (see docs/RELIABILITY.md, "A real full filesystem").
# Run from the repository root after building the guests and the host.
# Fill a real 8 MiB tmpfs through `ostore up` until 503, delete through the
# API, write again. Usage: full-tmpfs-delete.sh BIN DIR
BIN=$1; DIR=$2; PORT=39471
$BIN up -f spin.toml --data-dir "$DIR/data" --listen 127.0.0.1:$PORT > "$DIR/../host.log" 2>&1 &
PID=$!
for i in $(seq 1 600); do curl -s -o /dev/null http://127.0.0.1:$PORT/readyz && break; sleep 0.2; done
VAL=$(head -c 60000 /dev/zero | tr '\0' x)
n=0; first503=""
while [ $n -lt 400 ]; do
  code=$(curl -s -o "${TMPDIR:-/tmp}/ostore-full.body" -w '%{http_code}' -X POST http://127.0.0.1:$PORT/store -d "{\"key\":\"k$n\",\"value\":\"$VAL\"}")
  if [ "$code" != 200 ]; then first503="$n $code $(head -c 200 "${TMPDIR:-/tmp}/ostore-full.body")"; break; fi
  n=$((n+1))
done
echo "stored $n keys of 60 KB; then: $first503"
echo "readyz: $(curl -s -w ' %{http_code}' http://127.0.0.1:$PORT/readyz)"
echo "healthz: $(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$PORT/healthz)"
echo "df: $(df -k $DIR | tail -1)"
echo "read k0: $(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$PORT/store/k0)"
d=0; dfail=0
for i in $(seq 0 $((n/2))); do
  code=$(curl -s -o /dev/null -w '%{http_code}' -X DELETE http://127.0.0.1:$PORT/store/k$i)
  if [ "$code" = 200 ] || [ "$code" = 204 ]; then d=$((d+1)); else dfail=$((dfail+1)); fi
done
echo "deleted $d keys, $dfail deletes refused"
sleep 1.5
w=0
for i in $(seq 1 20); do
  code=$(curl -s -o "${TMPDIR:-/tmp}/ostore-full.body" -w '%{http_code}' -X POST http://127.0.0.1:$PORT/store -d "{\"key\":\"again$i\",\"value\":\"$VAL\"}")
  [ "$code" = 200 ] && w=$((w+1))
done
echo "after the deletes: $w of 20 new writes of 60 KB acknowledged; last answer $code"
echo "readyz: $(curl -s -w ' %{http_code}' http://127.0.0.1:$PORT/readyz)"
ok=0; for i in $(seq $((n/2+1)) $((n-1))); do [ "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$PORT/store/k$i)" = 200 ] && ok=$((ok+1)); done
echo "acknowledged keys not deleted still read: $ok of $((n-1-n/2))"
echo "log lines 'writes failing': $(grep -c 'writes failing' $DIR/../host.log), 'writes recovered': $(grep -c 'writes recovered' $DIR/../host.log)"
kill $PID; wait $PID 2>/dev/null
